"""Where the package's data files (urdf/, config/, launch/) are, installed or from a checkout."""
from __future__ import annotations

from pathlib import Path


def _share_dir() -> Path:
    """Root that holds ``urdf/``, ``config/`` and ``launch/``.

    From a source checkout or ``pip install -e .`` this is the repository root; under a colcon
    install it is ``share/mt_specialize`` (found through ament_index when available).
    """
    repo_root = Path(__file__).resolve().parent.parent
    if (repo_root / "urdf").is_dir():
        return repo_root
    try:  # colcon / ROS 2 install
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mt_specialize"))
    except Exception as exc:  # pragma: no cover - depends on the install
        raise FileNotFoundError(
            "cannot find mt_specialize's data files (urdf/, config/): not a source checkout and "
            "ament_index has no 'mt_specialize' package"
        ) from exc


SHARE_DIR = _share_dir()
URDF_DIR = SHARE_DIR / "urdf"
CONFIG_DIR = SHARE_DIR / "config"
LAUNCH_DIR = SHARE_DIR / "launch"
