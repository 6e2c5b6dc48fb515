"""The engine layer: the only package that speaks to Docker (docker-py, or a docker CLI for BuildKit builds)."""
from __future__ import annotations

from .building import BuildEvent, build, build_with_buildkit, buildkit_cli, make_context
from .connection import (architecture, client, current_host, host_environment, quick_image_id, server_info, set_host,
                         use_host)
from .containers import (ContainerInfo, ContainerSpec, create, create_and_start, start, exec_stream, inspect, list_managed, logs,
                         remove, run_once, signal, stop, wait)
from .images import (MANAGED_LABEL, ImageInfo, commit, ensure_base, image_info, import_rootfs, list_images, pull, push,
                     remove_image, repo_digests, tag_image)
from .transfer import create_volume, get_archive, load_image, put_archive, remove_volume, save_image

__all__ = [
    "ContainerInfo", "ContainerSpec", "commit", "create", "create_and_start", "start", "exec_stream", "inspect", "list_managed", "logs",
    "pull", "push", "remove", "repo_digests", "signal", "stop", "tag_image", "wait",
    "BuildEvent", "ImageInfo", "MANAGED_LABEL", "architecture", "build", "build_with_buildkit", "buildkit_cli", "client",
    "ensure_base", "image_info", "import_rootfs", "list_images", "make_context", "quick_image_id", "remove_image",
    "run_once", "server_info", "current_host", "host_environment", "set_host", "use_host",
    "create_volume", "get_archive", "load_image", "put_archive", "remove_volume", "save_image",
]
