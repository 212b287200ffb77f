"""Name-to-object registries, with the behaviour Dassl's trainers and datasets rely on."""
from difflib import SequenceMatcher
from typing import Any, Callable, List, Optional


class Registry:
    """Maps a class or function name to the object, filled by a decorator at import time."""

    def __init__(self, name: str):
        self._name = name
        self._obj_map: dict = {}

    def _do_register(self, name: str, obj: Any, force: bool = False) -> None:
        if name in self._obj_map and not force:
            raise KeyError(f'An object named "{name}" is already registered in "{self._name}"')
        self._obj_map[name] = obj

    def register(self, obj: Any = None, force: bool = False) -> Optional[Callable]:
        """Register ``obj`` under its ``__name__``; without ``obj``, return a decorator."""
        if obj is None:
            def wrapper(fn_or_class):
                self._do_register(fn_or_class.__name__, fn_or_class, force=force)
                return fn_or_class

            return wrapper

        self._do_register(obj.__name__, obj, force=force)
        return None

    def get(self, name: str) -> Any:
        if name not in self._obj_map:
            raise KeyError(f'No object named "{name}" in the "{self._name}" registry')
        return self._obj_map[name]

    def registered_names(self) -> List[str]:
        return list(self._obj_map.keys())

    def __contains__(self, name: str) -> bool:
        return name in self._obj_map


def closest_string(probe: str, candidates: List[str]) -> Optional[str]:
    """The candidate most similar to ``probe`` (difflib ratio), used in error messages."""
    best, best_ratio = None, -1.0
    for candidate in candidates:
        ratio = SequenceMatcher(None, probe, candidate).ratio()
        if ratio >= best_ratio:
            best, best_ratio = candidate, ratio
    return best


def check_availability(requested: str, available: List[str]) -> None:
    """Raise ``ValueError`` naming the closest available string when ``requested`` is unknown."""
    if requested not in available:
        guess = closest_string(requested, available)
        raise ValueError(
            f'"{requested}" is not one of {sorted(available)} (did you mean "{guess}"?)'
        )
