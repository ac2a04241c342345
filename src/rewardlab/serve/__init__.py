"""Serve a trained reward model over HTTP (OpenRLHF ``/get_reward``, chat ``/score``) with dynamic batching."""

from rewardlab.serve.config import ServeConfig, ServeConfigError, exposure_warning, is_loopback, token_from_env

__all__ = [
    "BackgroundServer",
    "ServeConfig",
    "ServeConfigError",
    "create_app",
    "exposure_warning",
    "is_loopback",
    "run_server",
    "token_from_env",
]


def __getattr__(name: str) -> object:
    """Load the app and runner lazily: `import rewardlab.serve` alone pulls in neither torch nor uvicorn."""
    if name == "create_app":
        from rewardlab.serve.app import create_app

        return create_app
    if name in ("BackgroundServer", "run_server"):
        from rewardlab.serve import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'rewardlab.serve' has no attribute {name!r}")


# `rewardlab.serve(model_dir, ServeConfig(...))` runs `run_server` (see `rewardlab.callable_package`).
from rewardlab.callable_package import make_callable  # noqa: E402

make_callable(__name__, "rewardlab.serve.runner:run_server")
