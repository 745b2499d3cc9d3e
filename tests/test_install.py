"""requirements.lock (`make lock`) against pyproject.toml: make venv installs with it as constraints, so a
range changed without relocking would either fail the install or leave a package unpinned."""
import tomllib
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
TESTED = {"python_version": "3.11", "platform_system": "Linux", "platform_machine": "x86_64"}


def locked() -> dict[str, Requirement]:
    lines = (ROOT / "requirements.lock").read_text().splitlines()
    return {canonicalize_name(r.name): r for r in (Requirement(line) for line in lines if line and not line.startswith("#"))}


def test_the_lock_pins_every_requirement_within_its_range_on_the_tested_platform():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = {name: deps for name, deps in project["optional-dependencies"].items() if name != "gpu"}  # cpu is locked
    lock, environment = locked(), {**default_environment(), **TESTED}
    for requirement in map(Requirement, [*project["dependencies"], *(d for deps in extras.values() for d in deps)]):
        pin = lock.get(canonicalize_name(requirement.name))
        assert pin is not None, f"requirements.lock has no {requirement.name}: run make lock"
        (version,) = [s.version for s in pin.specifier if s.operator == "=="]
        assert requirement.specifier.contains(version, prereleases=True), f"{pin} is outside {requirement}: run make lock"
    assert all(pin.marker.evaluate(environment) for pin in lock.values())
    assert not any(pin.marker.evaluate({**environment, "python_version": "3.12"}) for pin in lock.values())
