"""JupyterLab as tradeloop starts it (`make lab`, `tradeloop up`): put this folder on
JUPYTER_CONFIG_PATH and run `jupyter lab` from the repository.

- The server's root is the repository, so notebooks/ and the executed pipeline notebooks
  (data/runs/<run id>/) both show; Lab opens on notebooks/.
- jupytext's text notebooks (notebooks/*.py) open as notebooks on double-click: the default
  viewer of Python files is jupytext's, set in lab/settings/overrides.json (the defaults of
  Lab's settings; a user's own settings still win). Other .py files open as notebooks too:
  right-click, Open With, Editor for the text.
- Kernels start in the notebook's folder, so the data folder is passed to them absolute
  (TRADELOOP_DATA_DIR, resolved as tradeloop resolves it where Lab was started): notebooks
  read their paths from the settings, never from the working directory.
- As root, Lab needs allow_root; it is decided from the user id.
- Its port is the one of TRADELOOP_LAB_URL (default 8888), where Dagster's links to the
  executed notebooks point; --port on the command line wins.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
c = get_config()  # noqa: F821 - Jupyter's config loader defines it

c.ServerApp.root_dir = str(HERE.parent)
c.ServerApp.allow_root = hasattr(os, "geteuid") and os.geteuid() == 0
c.LabApp.app_settings_dir = str(HERE / "lab" / "settings")
c.LabApp.default_url = "/lab/tree/notebooks"

try:
    from tradeloop.settings import get_settings
except ImportError:  # a Jupyter outside tradeloop's environment: kernels use their own settings
    pass
else:
    settings = get_settings()
    os.environ["TRADELOOP_DATA_DIR"] = str(settings.data_dir.resolve())
    c.ServerApp.port = urlsplit(settings.lab_url).port or 8888
