from __future__ import annotations

from mmsafe.component import Loadable
from mmsafe.registry import Registry
from mmsafe.types import Response, Sample


class Defense(Loadable):
    """Sits between the attacked sample and the target.

    ``on_input`` may rewrite the sample or block it by returning a ``Response`` (the refusal the user would see);
    ``on_output`` may rewrite or replace the model's response. Defaults pass everything through.
    """

    def on_input(self, sample: Sample) -> Sample | Response:
        return sample

    def on_output(self, sample: Sample, response: Response) -> Response:
        return response


defenses: Registry[Defense] = Registry("defense", "mmsafe.defenses")
