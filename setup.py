"""Packaging driven by settings.ini (nbdev 2 convention): one source of truth for metadata and requirements."""
from configparser import ConfigParser

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]


def reqs(key):
    return cfg.get(key, "").split()


setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    license="MIT",
    keywords=cfg["keywords"].split(),
    python_requires=">=" + cfg["min_python"],
    packages=setuptools.find_packages(include=["superpos", "superpos.*"]),
    include_package_data=True,
    install_requires=reqs("requirements"),
    extras_require={
        "dev": reqs("dev_requirements"),
        "lpips": reqs("lpips_requirements"),
        "dreamsim": reqs("dreamsim_requirements"),
        "cluster": reqs("cluster_requirements"),
    },
    entry_points={
        "console_scripts": cfg["console_scripts"].split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
    zip_safe=False,
)
