"""Models: a registry of pretrained backbones with cards, each built into a task model with layer groups."""

from workbench.models.base import BuildContext, ModelCard, TaskModel
from workbench.models.registry import (
           MODELS,
           build_task_model,
           get_model_card,
           layer_groups,
           list_models,
           models_dir,
)

__all__ = ["MODELS", "BuildContext", "ModelCard", "TaskModel", "build_task_model", "get_model_card", "layer_groups",
           "list_models", "models_dir"]
