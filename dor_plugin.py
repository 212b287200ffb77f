"""Plugin mode: load this project's trainers into a Dassl-based repository (CoOp, KgCoOp ...).

In the host's train.py, after its own ``import trainers.*`` lines::

    sys.path.append("/path/to/this/project")
    import dor_plugin                       # registers CoOpDOR, KgCoOpDOR, ... into Dassl

and at the end of its ``extend_cfg(cfg)``::

    dor_plugin.extend_cfg(cfg)              # adds TRAINER.DOR etc.; keeps the host's keys

Trainer names the host already registered (its own CoOp, say) stay the host's. The project's
``trainers`` and ``datasets`` packages are loaded under the names ``dor_trainers`` and
``dor_datasets`` so they never shadow the host's packages of the same names.
"""
import importlib.util
import os
import os.path as osp
import sys
from types import ModuleType

ROOT = osp.dirname(osp.abspath(__file__))
if ROOT not in sys.path:
    sys.path.append(ROOT)

# A host may import this before Dassl itself; its trainers still belong in Dassl's registry.
os.environ.setdefault("DOR_TOOLBOX", "dassl")


def _load_package(alias: str, folder: str) -> ModuleType:
    """Import ``ROOT/folder`` as the package ``alias`` (its modules import one another
    relatively, so the alias works)."""
    if alias in sys.modules:
        return sys.modules[alias]
    path = osp.join(ROOT, folder)
    spec = importlib.util.spec_from_file_location(alias, osp.join(path, "__init__.py"),
                                                  submodule_search_locations=[path])
    module = importlib.util.module_from_spec(spec)
    sys.modules[alias] = module
    spec.loader.exec_module(module)
    return module


datasets = _load_package("dor_datasets", "datasets")
trainers = _load_package("dor_trainers", "trainers")
extend_cfg = importlib.import_module("dor_trainers.config").extend_cfg
