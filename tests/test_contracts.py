"""The contract every registered component keeps, checked over the registries (a new component is covered without
editing this file): it builds from its defaults or says why not, building loads no model, it has a one-line
summary for ``mmsafe list``, and its spec label rebuilds the same spec. Plus the README's "adding a component":
a component from an outside package, found through the ``mmsafe.components`` entry-point group."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import textwrap

import pytest

from mmsafe.attacks import attacks
from mmsafe.component import Component
from mmsafe.datasets import datasets
from mmsafe.defenses import defenses
from mmsafe.judges import judges
from mmsafe.models import MODEL_CACHE
from mmsafe.registry import ComponentSpec
from mmsafe.targets import targets

REGISTRIES = (datasets, attacks, defenses, targets, judges)
CASES = [(reg, name) for reg in REGISTRIES for name in reg.names()]


def _named_arg(cls: type) -> dict:
    """One named argument with a JSON default (the first), to round-trip a label that carries arguments."""
    init = cls.__new__ if "__new__" in vars(cls) else cls.__init__
    for p in list(inspect.signature(init).parameters.values())[1:]:
        if p.default is not inspect.Parameter.empty and p.default is not None:
            try:
                json.dumps(p.default)
            except TypeError:
                continue
            return {p.name: p.default}
    return {}


@pytest.mark.parametrize(("registry", "name"), CASES, ids=[f"{r.kind}:{n}" for r, n in CASES])
def test_component_contract(registry, name):
    cls = registry.get(name)
    summary = registry.describe(name)
    assert summary.strip() and "\n" not in summary, f"{registry.kind} {name}: needs a docstring's first line"
    assert issubclass(cls, Component)
    if cls.needs_args is not None:
        assert isinstance(cls.needs_args, str) and cls.needs_args.strip()
        with pytest.raises(ValueError):  # and it does not build without them
            registry.build(name)
        return
    loads = MODEL_CACHE.loads
    obj = registry.build(name)
    assert MODEL_CACHE.loads == loads, f"building {registry.kind} {name} loaded a model: load lazily, in load()"
    assert ComponentSpec.parse(obj.spec.label) == obj.spec
    spec = ComponentSpec(name=name, args=_named_arg(cls))
    assert ComponentSpec.parse(spec.label) == spec
    rebuilt = registry.build(spec.label)
    assert rebuilt.spec == spec
    obj.close()
    rebuilt.close()
    obj.close()  # closing twice is harmless


def test_building_every_component_imports_no_torch():
    code = textwrap.dedent("""
        import sys
        from mmsafe.attacks import attacks
        from mmsafe.datasets import datasets
        from mmsafe.defenses import defenses
        from mmsafe.judges import judges
        from mmsafe.targets import targets
        for reg in (datasets, attacks, defenses, targets, judges):
            for name in reg.names():
                if reg.get(name).needs_args is None:
                    reg.build(name)
        print("torch" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


PLUGIN = '''
from mmsafe.attacks import Attack, attacks


@attacks.register("shout-demo")
class Shout(Attack):
    """Upper-cases the prompt (a demo of a component from an outside package)."""

    def apply(self, sample):
        return sample.with_(prompt=sample.prompt.upper())
'''


def test_a_component_from_an_outside_package_is_listed_and_builds(tmp_path):
    pkg = tmp_path / "demo_plugin"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "shout.py").write_text(PLUGIN)
    dist = tmp_path / "demo_plugin-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: demo-plugin\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[mmsafe.components]\nshout = demo_plugin.shout\n")
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        from typer.testing import CliRunner
        from mmsafe.cli.main import app
        from mmsafe.attacks import attacks
        from mmsafe.types import Sample
        listed = CliRunner().invoke(app, ["list", "attacks"], env={{"COLUMNS": "200"}})
        assert listed.exit_code == 0, listed.output
        assert "shout-demo" in listed.output and "Upper-cases the prompt" in listed.output, listed.output
        print(attacks.build("shout-demo").apply(Sample(id="1", prompt="hi")).prompt)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HI"
