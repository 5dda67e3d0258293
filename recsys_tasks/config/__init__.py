"""Configuration: every setting declared once with its default, why and param metadata
(`settings`), run-level params typed and applied (`params`), and the deployment's
environment, the one place `os.environ` is read (`environment`)."""

from recsys_tasks.config.environment import config_from_env, default_config, recsys_home
from recsys_tasks.config.params import (
    PARAMS,
    Param,
    check_consistency,
    field_overrides,
    parse_caps,
    parse_event_weights,
    typed_params,
    with_params,
)
from recsys_tasks.config.settings import (
    SELF_SUPERVISED,
    SOURCE_FORMATS,
    SPLITS,
    WARM_START,
    ModelConfig,
    PipelineConfig,
    TrainConfig,
    ValidationRules,
    canonical_objectives,
    objective_sets,
)

__all__ = [
    "PARAMS", "SELF_SUPERVISED", "SOURCE_FORMATS", "SPLITS", "WARM_START", "ModelConfig", "Param", "PipelineConfig",
    "TrainConfig", "ValidationRules", "canonical_objectives", "check_consistency", "config_from_env", "default_config",
    "field_overrides", "objective_sets", "parse_caps", "parse_event_weights", "recsys_home", "typed_params", "with_params",
]
