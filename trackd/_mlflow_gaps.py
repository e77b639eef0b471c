"""MLflow's names that trackd leaves out, and what to use instead: the one home of that advice.

``trackd.<name>`` (one of MLflow's fluent functions), ``trackd.config.<name>`` and
``trackd.tracking.<name>`` (of ``mlflow.config`` and ``mlflow.tracking``) and ``trackd.Client().<name>``
(one of ``MlflowClient``'s methods) raise AttributeError with this advice, so code ported with
``import trackd as mlflow`` learns what to use, not only that the name is missing. Loaded on the
first such miss, never by ``import trackd`` (whose start a benchmark measures).
"""

from __future__ import annotations

USE_MLFLOW = "not part of trackd's logging API; MLflow itself reads and edits the same ./mlruns (MLFLOW_ALLOW_FILE_STORE=true)"

# What MLflow's get_parent_run reads: the child's mlflow.parentRunId tag (None without it).
_PARENT = "read the parent's id from the run's mlflow.parentRunId tag, as MLflow's does (no tag: no parent): "

# Of MLflow's tracking edits, these leave a store MLflow's own calls can make the same way.
_EDITS = (
    "delete_run", "restore_run", "delete_experiment", "restore_experiment", "set_experiment_tag",
    "set_experiment_tags", "delete_experiment_tag",
)

# Logged models and datasets are MLflow's entities, which trackd does not write.
_MODELS = (
    "models and datasets are MLflow's entities: save the model (or the dataset) with its framework and log_artifact it, "
    "or use MLflow on the same ./mlruns (MLFLOW_ALLOW_FILE_STORE=true)"
)

# The model registry's URI, as mlflow, mlflow.config and mlflow.tracking name it: trackd has no registry to point at.
_REGISTRY = (
    "trackd has no model registry (models are MLflow's entities): log the model's files with trackd.log_artifact(), "
    "or use MLflow's registry on the same ./mlruns (MLFLOW_ALLOW_FILE_STORE=true)"
)

_REGISTRY_HINTS = dict.fromkeys(("get_registry_uri", "set_registry_uri"), _REGISTRY)

# MLflow's modules for frameworks and GenAI libraries (``mlflow.pytorch``, ``mlflow.sklearn``, ``mlflow.openai``:
# their log_model, autolog and tracing), lazily loaded attributes of MLflow ADVISED_MLFLOW (a test compares).
# A script ported with ``import trackd as mlflow`` that calls ``mlflow.pytorch.log_model`` got a bare
# "module 'trackd' has no attribute 'pytorch'".
_MLFLOW_MODULES = """
    ag2 agno anthropic autogen bedrock catboost crewai diffusers dspy gemini groq h2o haystack johnsnowlabs keras
    langchain lightgbm litellm llama_index metrics mistral onnx openai otel paddle pmdarima prophet pydantic_ai pyfunc
    pyspark pytorch rfunc semantic_kernel sentence_transformers shap sklearn smolagents spacy spark statsmodels strands
    tensorflow transformers txtai typesafe xgboost
"""


def _module_hint(name: str) -> str:
    return (
        f"mlflow.{name} (its log_model, autolog or tracing) is MLflow's own module, not part of trackd: save a model with "
        "its framework and trackd.log_artifact() its files, log values with trackd.log_metric() and trackd.log_param(), "
        f"or use mlflow.{name} on the same ./mlruns (MLFLOW_ALLOW_FILE_STORE=true)"
    )


# Tracing, prompts, assessments and GenAI evaluation: MLflow's entities, as models are.
_GENAI = (
    "tracing, prompts, assessments and GenAI evaluation are MLflow's entities, which trackd does not write: "
    "use MLflow on the same ./mlruns (MLFLOW_ALLOW_FILE_STORE=true)"
)
_GENAI_NAMES = """
    add_trace context delete_assessment delete_prompt_alias delete_trace_tag flush_trace_async_logging gateway
    get_active_trace_id get_assessment get_current_active_span get_last_active_trace_id get_trace load_prompt
    log_assessment log_expectation log_feedback log_issue log_trace override_feedback register_prompt search_prompts
    search_sessions search_traces set_prompt_alias set_trace_tag start_span start_span_no_context test trace
    update_assessment update_current_trace validate_evaluation_results
"""
# Logged models and the registry's searches and tags.
_MODEL_NAMES = """
    ActiveModel clear_active_model create_external_model delete_logged_model_tag finalize_logged_model
    get_active_model_id get_logged_model import_checkpoints initialize_logged_model last_logged_model log_model_params
    search_logged_models set_active_model set_logged_model_tags
"""
_WORKSPACES = (
    "workspaces belong to an MLflow tracking server; a ./mlruns store has none (one store per folder: "
    "trackd.set_tracking_uri(path))"
)

FLUENT_HINTS = {
    **{name: _module_hint(name) for name in _MLFLOW_MODULES.split()},
    **dict.fromkeys(_GENAI_NAMES.split(), _GENAI),
    **dict.fromkeys(_MODEL_NAMES.split(), _MODELS),
    **dict.fromkeys(("search_model_versions", "search_registered_models", "set_model_version_tag"), _REGISTRY),
    **dict.fromkeys(
        ("create_workspace", "delete_workspace", "get_workspace", "list_workspaces", "set_workspace", "update_workspace"),
        _WORKSPACES,
    ),
    "run": "MLflow Projects are not part of trackd: run the entry point yourself (python train.py); its trackd calls log to ./mlruns",
    "login": "login is for a Databricks or MLflow server; trackd logs to a local ./mlruns and needs none",
    "doctor": "for trackd's state run `trackd daemon status`; mlflow.doctor describes MLflow's environment",
    "flush_artifact_async_logging": "use trackd.flush(): it returns once everything logged, artifacts included, is in the store",
    # mlflow.utils.mlflow_tags: the system tags' names, which scripts import to read or set a run's name or parent.
    "utils": (
        "mlflow.utils is MLflow's internals; its tag names (mlflow.utils.mlflow_tags) are plain strings: "
        "'mlflow.runName', 'mlflow.parentRunId', 'mlflow.source.name', 'mlflow.user', 'mlflow.note.content'"
    ),
    "Image": "trackd.log_image() takes a PIL image, a NumPy array (through Pillow) or an mlflow.Image made by MLflow itself",
    "search_experiments": "use trackd.Client().search_experiments()",
    "autolog": "trackd logs what your code logs; call trackd.log_metric() and friends",
    "log_stream": "write the stream to a file and trackd.log_artifact() it",
    # get_artifact_uri gives a plain path for a store set as one, a file:// URI otherwise (as MLflow's
    # does), which open() takes as a relative path.
    "load_table": (
        "read the JSON file at trackd.get_artifact_uri(artifact_file) (a path when the tracking URI is a path; "
        "of a file:// URI, its local path: urllib.request.url2pathname(urllib.parse.urlparse(uri).path)), "
        "or use mlflow.load_table on the same ./mlruns"
    ),
    "get_parent_run": _PARENT + "trackd.get_run(trackd.get_run(run_id).data.tags['mlflow.parentRunId'])",
    **dict.fromkeys(_EDITS, USE_MLFLOW),
    **dict.fromkeys(("log_input", "log_inputs", "log_outputs", "log_model", "register_model", "evaluate"), _MODELS),
    **_REGISTRY_HINTS,
}

# trackd.config's missing names (mlflow.config's public names, MLflow ADVISED_MLFLOW; a test compares).
CONFIG_HINTS = {
    **_REGISTRY_HINTS,
    "MLFLOW_ENABLE_ASYNC_LOGGING": (
        "trackd's logging calls are always asynchronous; pass synchronous=True to one, or call trackd.flush(), to wait "
        "until it is in the store"
    ),
}

# trackd.tracking's missing names (mlflow.tracking's __all__, less its private names).
TRACKING_HINTS = {
    **_REGISTRY_HINTS,
    # Code that imports MLflow's fluent module by its full name (from mlflow.tracking import fluent).
    "fluent": "trackd's fluent functions are the trackd module's own (trackd.start_run, trackd.log_metric, ...)",
}

# The MLflow whose MlflowClient the list below was taken from.
ADVISED_MLFLOW = "3.17.2"

# MlflowClient's methods (MLflow ADVISED_MLFLOW) that trackd.Client does not have: the tracking edits
# above, and the model registry, logged models, prompts, traces, datasets, webhooks, workspaces
# and MCP servers. A test compares this with the installed MLflow's.
_CLIENT_LEFT_OUT = """
    add_dataset_to_experiments copy_model_version create_dataset create_logged_model create_mcp_access_endpoint
    create_mcp_server create_mcp_server_version create_model_version create_prompt create_prompt_version
    create_registered_model create_webhook create_workspace delete_dataset delete_dataset_tag delete_logged_model
    delete_logged_model_tag delete_mcp_access_endpoint delete_mcp_server delete_mcp_server_alias delete_mcp_server_tag
    delete_mcp_server_version delete_mcp_server_version_tag delete_model_version delete_model_version_tag
    delete_prompt delete_prompt_alias delete_prompt_tag delete_prompt_version delete_prompt_version_tag
    delete_registered_model delete_registered_model_alias delete_registered_model_tag delete_trace_tag
    delete_traces delete_webhook delete_workspace detach_prompt_from_run end_span end_trace finalize_logged_model
    get_dataset get_latest_mcp_server_version get_latest_versions get_logged_model get_mcp_access_endpoint
    get_mcp_server get_mcp_server_version get_mcp_server_version_by_alias get_model_version
    get_model_version_by_alias get_model_version_download_uri get_model_version_stages get_prompt
    get_prompt_version get_prompt_version_by_alias get_registered_model get_trace get_webhook get_workspace
    get_workspace_store_uri link_prompt_version_to_model link_prompt_version_to_run link_prompt_versions_to_trace
    link_traces_to_run list_logged_model_artifacts list_logged_prompts list_webhooks list_workspaces load_prompt
    log_model_artifact log_model_artifacts log_model_params parse_prompt_uri refresh_mcp_server_version_tools
    register_prompt remove_dataset_from_experiments rename_experiment rename_registered_model search_datasets
    search_logged_models search_mcp_access_endpoints search_mcp_server_versions search_mcp_servers
    search_model_versions search_prompt_versions search_prompts search_registered_models search_traces
    set_dataset_tags set_logged_model_tags set_mcp_server_alias set_mcp_server_tag set_mcp_server_version_tag
    set_model_version_tag set_prompt_alias set_prompt_tag set_prompt_version_tag set_registered_model_alias
    set_registered_model_tag set_trace_tag start_span start_trace test_webhook transition_model_version_stage
    unlink_traces_from_run update_mcp_access_endpoint update_mcp_server update_mcp_server_version
    update_model_version update_registered_model update_webhook update_workspace
"""

CLIENT_HINTS = {
    **dict.fromkeys((*_EDITS, *_CLIENT_LEFT_OUT.split()), USE_MLFLOW),
    "update_run": (
        "end a run with set_terminated(run_id, status); rename it with set_tag(run_id, 'mlflow.runName', name), "
        "which renames it in meta.yaml too, as MLflow's does"
    ),
    **dict.fromkeys(("log_inputs", "log_outputs"), _MODELS),
    "get_parent_run": _PARENT + "client.get_run(client.get_run(run_id).data.tags['mlflow.parentRunId'])",
    "log_stream": "write the stream to a file and log_artifact(run_id, path) it",
    "log_table": (
        "log the table as a dict with log_dict(run_id, {'columns': [...], 'data': [...]}, 'table.json'), "
        "or use MLflow's (it writes the table with pandas) on the same ./mlruns"
    ),
    "load_table": "read the JSON file download_artifacts(run_id, artifact_file) returns, or use MLflow's on the same ./mlruns",
}
