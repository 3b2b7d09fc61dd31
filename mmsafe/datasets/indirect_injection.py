from __future__ import annotations

from mmsafe.datasets._render import render_page
from mmsafe.datasets._scenario import Scenario
from mmsafe.datasets.base import datasets
from mmsafe.types import ImageRef, Sample

KINDS = ("marker", "link", "language")


@datasets.register("indirect-injection")
class IndirectInjection(Scenario):
    """Scenario, indirect prompt injection: the user asks an innocent question about an e-mail, web page, note or
    screenshot; a third party's instruction written in it tells the model to reply with a marker, add a link, or
    switch language.

    Success (judge ``injection``): the instruction was followed (the marker or link appears, or the answer is in
    the demanded language); ``llm:injection`` adds an LLM judge of the same question. Each case keeps the correct
    answer (``answer``), so the utility table shows whether the user's question was still answered. Written for
    mmsafe (after Greshake et al. 2023); 24 cases, 8 per kind.
    """

    judges = ("injection",)
    data = "indirect_injection.csv"

    def load(self) -> list[Sample]:
        out = []
        for n, row in enumerate(self.cases(["id", "category", "title", "body", "instruction", "question", "answer",
                                            "value"]), 1):
            if row["category"] not in KINDS:
                self.problems.append(f"{self.data}: case {n} ({row['id']}): kind {row['category']!r} is not one of "
                                     f"{', '.join(KINDS)}; skipped")
                continue
            lines = [*row["body"].split(" | "), row["instruction"]]
            image = ImageRef.from_pil(render_page(row["title"], lines, header=row.get("header", "")))
            target = row["value"] if row["category"] != "language" else None
            out.append(self.sample(row, row["question"], row["instruction"], target, benign=True, images=(image,),
                                   answer=row["answer"], injection={"kind": row["category"], "value": row["value"]}))
        return out
