"""What a scenario is: a built-in dataset that states its attack goal (leak a secret, call a tool, follow an injected
instruction, assert a false claim, disclose private data) and the judges that decide whether the goal was reached.

A scenario is a ``Dataset`` rather than a kind of its own: the registry, ``mmsafe list``, ``-d NAME``, resume keys,
the contract test and the report's per-dataset rows then apply as they are, and the only new declaration is the
one attacks already make, ``default_judges``. ``mmsafe scan --scenario NAME`` adds the dataset and its judges.

Every sample of a scenario keeps in ``metadata``: ``scenario`` (its name), ``instruction`` (the attacker's request in
words, what the typographic attacks render) and ``target`` (the answer the attacker wants, what a ``hijack`` forces),
plus the fields its judge reads (``canary``, ``tool_goal``, ``injection``, ``claim``, ``privacy``).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

from mmsafe.datasets._csv import read_rows
from mmsafe.datasets.base import Dataset, datasets
from mmsafe.registry import ComponentSpec
from mmsafe.types import ImageRef, Sample


class Scenario(Dataset):
    """Base of the scenario datasets: ``judges`` decide success; ``data`` names the case file under
    ``mmsafe/datasets/data/``."""

    judges: tuple[str, ...] = ()
    data: str = ""

    def default_judges(self) -> list[str]:
        return list(self.judges)

    def cases(self, required: list[str]) -> list[dict[str, str]]:
        """The rows of the scenario's case file with every ``required`` column filled (others go to problems)."""
        path = Path(str(resources.files("mmsafe.datasets") / "data" / self.data))
        return [row for _, row in read_rows(path, required, self.problems)]

    def sample(self, row: dict[str, str], prompt: str, instruction: str, target: str | None, benign: bool,
               images: tuple[ImageRef, ...] = (), system: str | None = None, **fields: Any) -> Sample:
        """A sample of this scenario with the metadata every scenario keeps (see the module docstring); ``target``
        is None where no attacker wants a fixed answer (a public question)."""
        name = self.registry_name  # type: ignore[attr-defined]
        meta = {"scenario": name, "instruction": instruction, **({"target": target} if target else {}), **fields}
        return Sample(id=row["id"], prompt=prompt, images=images, category=row["category"], source=name,
                      benign=benign, metadata=meta, system=system)


def hijack_spec(sample: Sample, **args: Any) -> ComponentSpec:
    """A ``hijack`` attack whose forced answer is the scenario sample's ``target`` (the canary reveal sentence, the
    tool call, the injected marker): the white-box route to the scenario's goal. ``args`` go to the attack (``eps``,
    ``steps``, ``target``, ``prompts``)."""
    target = sample.metadata.get("target")
    if not target:
        raise ValueError(f"sample {sample.id} has no scenario target (metadata 'target'); scenario datasets set one")
    return ComponentSpec(name="hijack", args={"output": target, **args})


def scenario_names() -> list[str]:
    """The registered datasets that are scenarios."""
    return [n for n in datasets.names() if issubclass(datasets.get(n), Scenario)]


def check_scenarios(specs: list[ComponentSpec]) -> list[ComponentSpec]:
    """``specs`` if each names a scenario; otherwise a ``ValueError`` that lists the scenarios."""
    for spec in specs:
        if not issubclass(datasets.get(spec.name), Scenario):
            raise ValueError(f"{spec.name!r} is a dataset but not a scenario; scenarios: "
                             f"{', '.join(scenario_names())}")
    return specs
