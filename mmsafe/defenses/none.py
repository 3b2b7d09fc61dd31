from mmsafe.defenses.base import Defense, defenses


@defenses.register("none")
class NoDefense(Defense):
    """No defense: the attacked sample goes to the target as it is (the baseline every defense is compared with)."""

    stages = ()  # nothing to record
