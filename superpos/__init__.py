"""superpos: interpretable directions in neural networks and brains, automated interpretability, SlowVAE.

The main public names are available at the top level and load lazily on first use, so that
`import superpos` is fast: `import superpos as sp; sp.extract(...); sp.mis(...); sp.KMeansDirections()`.
Constants, and names that two modules share (`evaluate`, `load_model`, `main`) are used from their modules.
"""
__version__ = "0.1.0"

import lazy_loader as _lazy

_SUBMODULES = ['core', 'responses', 'gallery', 'book', 'cli', 'stimuli', 'networks', 'directions', 'measures', 'analyses', 'brain', 'disentangle', 'geometry', 'sweep']

_ATTRIBUTES = {
    "core": ['SuperposError', 'ConfigError', 'DataError', 'MissingFileError', 'DownloadError', 'MissingExtraError', 'get_device', 'seed_everything', 'cache_dir', 'sha256sum', 'temp_sibling', 'stale_parts', 'clean_stale_parts', 'atomic_write', 'verify_file', 'download', 'as_list', 'output_dir', 'project_root', 'git_commit', 'environment', 'keep_freed_memory'],
    "responses": ['as_responses', 'response_dim', 'check_varying', 'align_responses', 'align_pair', 'label_like'],
    "stimuli.natural": ['bundled_photos', 'photo_stimuli', 'photo_patches', 'dead_leaves', 'gratings', 'textures', 'natural_stimuli', 'power_spectrum'],
    "stimuli.sets": ['StimulusSet', 'concat_stimuli', 'resize_images', 'to_uint8', 'check_count_and_size', 'as_stimulus_set', 'image_folder', 'imagenet_val', 'cifar10', 'image_grid'],
    "networks.extraction": ['extract'],
    "networks.models": ['Preprocess', 'VisionModel', 'cifar_resnet50', 'layer_names', 'default_layers', 'first_tensor', 'autocast_dtype', 'predict'],
    "networks.store": ['check_store_path', 'activations_tree', 'save_activations', 'load_activations', 'ActivationWriter'],
    "directions.base": ['check_finder_input', 'label_codes', 'is_lazy', 'lazy_rows', 'RowChunks', 'subset_rows', 'check_param', 'NotFitted', 'check_fitted', 'DirectionFinder', 'normalise_rows', 'unit_rows', 'IdentityDirections', 'RandomRotation'],
    "directions.kmeans": ['KMeansDirections', 'planted_clusters'],
    "directions.linear": ['PCADirections', 'ICADirections', 'NMFDirections'],
    "directions.registry": ['make_direction_finder'],
    "directions.sae": ['SparseAutoencoder'],
    "directions.spherical": ['spherical_objective', 'keep_torch_dtype', 'import_geomstats', 'SphericalKMeans'],
    "directions.toy": ['sample_features', 'ToyModel', 'train_toy_model', 'recovery_score', 'toy_recovery'],
    "measures.blockwise": ['float64_blocks', 'all_finite', 'chunk_bytes_for', 'EmbeddingSimilarity', 'pair_block', 'is_dot_product', 'similarity_embeddings'],
    "measures.bootstrap": ['check_bootstrap', 'seed_streams', 'resample_means', 'stratified_resample_means', 'percentile_interval'],
    "measures.borowski": ['download_borowski', 'load_borowski', 'load_borowski_mapping', 'borowski_unit_scores', 'borowski_accuracy', 'synthetic_borowski', 'synthetic_borowski_mapping'],
    "measures.extremes": ['check_integer', 'MeasureInputs', 'prepare_inputs', 'StreamedResponses', 'stimulus_blocks', 'response_coords', 'extreme_stimuli', 'stimuli_at_ranks', 'streaming_extremes'],
    "measures.human": ['download_imi', 'read_bool_column', 'exclude_missing_responses', 'check_responses', 'check_columns', 'load_imi', 'imi_unit_scores', 'bootstrap_mean', 'imi_model_scores', 'synthetic_imi', 'compare_scores', 'separation_auc', 'trial_agreement'],
    "measures.index": ['interpretability_index'],
    "measures.mis": ['sample_mis_tasks', 'mis_from_tasks', 'mis', 'calibrate_alpha'],
    "measures.planted": ['feature_stimuli', 'stimulus_classes', 'planted_responses', 'random_responses'],
    "measures.selection": ['rank_order', 'tie_permutation', 'order_keys', 'extremes_by_chunk', 'ranked_stimuli'],
    "measures.similarity": ['stimulus_fingerprint', 'similarity_to_distance', 'SimilarityBackend', 'PixelSimilarity', 'ColorHistogramSimilarity', 'PerceptualSimilarity', 'LPIPSAlexNet', 'DreamSim', 'get_similarity', 'symmetrize_', 'gram_tensor', 'similarity_matrix'],
    "measures.twoafc": ['check_quantiles', 'psychophysics_2afc'],
    "analyses.cnn": ['load_stimuli', 'n_directions_for', 'check_analysis_config', 'stored_activations', 'check_store_similarity', 'open_embeddings', 'load_embeddings', 'store_embeddings', 'cnn_analysis'],
    "analyses.comparison": ['score_responses', 'participation_ratio', 'check_scores', 'bootstrap_mean_difference', 'unpaired_comparison', 'compare_methods', 'matched_pairs', 'paired_comparison', 'compare_to_reference'],
    "analyses.ranking": ['stimulus_rows', 'row_blocks', 'top_rows', 'top_source_fraction', 'first_k_sources', 'id_strings', 'source_balanced_index'],
    "brain.allen": ['shared_blank_mask', 'spontaneous_onsets', 'unit_quality_mask', 'invalid_mask', 'roi_metadata', 'unit_metadata'],
    "brain.dandi": ['find_natural_scenes_sessions', 'AtomicDiskCache', 'StalledRead', 'RemoteFile', 'open_remote_nwb', 'dandi_asset_url', 'load_dandi_session'],
    "brain.nwb": ['split_layout_path', 'check_window', 'NWBLayout', 'open_nwb', 'detect_layout', 'read_nwbfile', 'load_nwb'],
    "brain.reliability": ['split_halves', 'split_half_reliability', 'to_stimulus_set', 'attach_images'],
    "brain.synthetic": ['write_synthetic_nwb', 'planted_truth'],
    "disentangle.dsprites": ['grid_strides', 'check_factors', 'factor_values', 'position_centres', 'render_direct', 'render_sprites', 'pack_images', 'unpack_images', 'DSprites', 'gif_factors', 'read_dsprites_gif'],
    "disentangle.metrics": ['as_sample_matrix', 'check_factors_latents', 'check_metric_int', 'rank_columns', 'correlation_matrix', 'mcc_detailed', 'mcc', 'histogram_discretize', 'discretize_factors', 'entropy_codes', 'mutual_info_codes', 'mig_detailed', 'mig', 'modularity_from_mi', 'modularity_detailed', 'modularity', 'gaussian_total_correlation', 'gaussian_wasserstein_correlation', 'unsupervised_scores'],
    "disentangle.model": ['vae_encoder', 'vae_decoder', 'encode', 'gaussian_entropy', 'normal_cross_entropy', 'laplace_cross_entropy', 'slowvae_loss'],
    "disentangle.natural": ['checksum_record', 'record_checksum', 'dataset_file', 'read_natural_sprites_csv', 'sparse_steps', 'write_natural_sprites_fixture', 'natural_shape_table', 'polygon_coverage', 'render_natural_sprites', 'filter_area', 'quantise_pairs', 'NaturalSprites', 'NaturalSpritesGroundTruth', 'write_kitti_fixture', 'check_kitti', 'KittiMasks', 'transition_sparsity', 'natural_transitions'],
    "disentangle.pairs": ['PairBatch', 'PairDataset', 'check_pairs', 'draw_index', 'laplace_weights', 'laplace_transition', 'uniform_transition', 'PairSampler', 'DSpritesPairs'],
    "disentangle.predictive": ['dci_from_importance', 'dci_detailed', 'dci', 'sap_detailed', 'sap', 'explicitness_detailed', 'explicitness'],
    "disentangle.runs": ['plot_reconstructions', 'plot_traversals', 'plot_logs', 'compare', 'summarize', 'plot_comparison', 'load_comparison', 'plot_learning_curves', 'comparison_from_logs'],
    "disentangle.sampled_metrics": ['beta_vae_score_detailed', 'beta_vae_score', 'factor_vae_score_detailed', 'factor_vae_score', 'irs_detailed', 'irs', 'evaluate_model', 'evaluate_latents'],
    "disentangle.training": ['SlowVAEConfig', 'make_pair_dataset', 'eval_set', 'save_checkpoint', 'load_checkpoint', 'native_bf16', 'train'],
    "geometry.comparison": ['match_directions', 'check_rng', 'random_rotation', 'randomly_rotate', 'null_p_value', 'check_n_permutations', 'axis_alignment', 'axis_alignment_null', 'compare_direction_sets', 'rotation_nulls', 'DirectionSetComparison', 'plot_matched_angles'],
    "geometry.manifolds": ['hypersphere', 'grassmannian', 'stiefel', 'as_directions', 'check_same_space', 'direction_labels', 'geodesic_distance', 'pairwise_geodesic_distances', 'sphere_log', 'sphere_exp', 'frechet_mean', 'geomstats_frechet_mean', 'stiefel_frame', 'grassmannian_point', 'principal_angles', 'subspace_distance', 'geomstats_subspace_distance', 'sphere_embedding', 'orient'],
    "geometry.representations": ['direction_responses', 'match_responses', 'linear_cka', 'rdm', 'rsa', 'response_nulls', 'ResponseComparison'],
    "gallery": ['page_output', 'notebook_pages', 'image_strip', 'gallery_page'],
    "book": ['toc_files', 'toc_notebooks', 'package_digest', 'source_key', 'package_environment', 'ExecutedPage', 'execute_notebook', 'prepare_page', 'stage_book', 'public_modules', 'api_page', 'local_mathjax', 'build_book'],
    "sweep.grid": ['grid_runs', 'jobqueue_cluster', 'connect', 'SweepResult', 'gather_tables', 'gather', 'to_dataset', 'write_gathered'],
    "sweep.runs": ['find_notebook', 'notebook_parameters', 'list_notebooks', 'read_yaml', 'check_parameters', 'run_identity', 'run_name', 'run_status', 'find_runs', 'NotebookFailed', 'run_notebook'],
}

__getattr__, __dir__, __all__ = _lazy.attach(__name__, submodules=_SUBMODULES, submod_attrs=_ATTRIBUTES)
