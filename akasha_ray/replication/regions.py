"""Who is what now: the regions of the configuration seen through the witness's epoch.

The configuration says how regions start; after a promotion only the witness knows which region
is primary. This module turns (config, epoch, primary) into each region's role and into what this
region's coordinator for another region does: ship to it, apply from it, or nothing. Pure: no
I/O, so every rule is unit-tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from akasha_ray.config import DrConfig, RegionConfig

Role = Literal["primary", "secondary", "backup"]
# What a `region-<other>` coordinator does: ship this region's log to `other`'s bucket (this
# region is primary), apply `other`'s log from this region's bucket (`other` is primary), or wait.
Duty = Literal["ship", "apply", "idle"]


@dataclass(frozen=True)
class RegionsView:
    dr: DrConfig
    epoch: int
    primary: str
    # This region was primary and learned from the witness that another one is: its stores may
    # hold writes the new primary never got, so it applies nothing until `akasha dr rejoin`.
    fenced: bool = False

    def __post_init__(self) -> None:
        names = [r.name for r in self.dr.regions]
        if self.primary not in names:
            raise ValueError(f"the witness names {self.primary!r}, not one of {names}")

    @property
    def here(self) -> str:
        assert self.dr.region is not None, "DR is off"
        return self.dr.region

    def region(self, name: str) -> RegionConfig:
        for region in self.dr.regions:
            if region.name == name:
                return region
        raise KeyError(name)

    def role(self, name: str) -> Role:
        """The witness's primary is primary; otherwise the configured backup stays backup and
        every other region (the old primary included) is a secondary."""
        if name == self.primary:
            return "primary"
        return "backup" if self.region(name).role == "backup" else "secondary"

    @property
    def is_primary(self) -> bool:
        return self.primary == self.here

    def duty(self, other: str) -> Duty:
        """What this region's coordinator for `other` does now."""
        if other == self.here:
            raise ValueError("a region has no coordinator for itself")
        if self.is_primary:
            return "ship"  # every other region gets the log: secondaries apply it, backups keep it
        if other == self.primary and self.role(self.here) == "secondary" and not self.fenced:
            return "apply"
        # A backup serves nothing; a secondary does not ship to its peers; a fenced region waits.
        return "idle"

    def ship_targets(self) -> list[RegionConfig]:
        """Where this region ships now (none unless it is the primary)."""
        return [r for r in self.dr.others() if self.duty(r.name) == "ship"]

    def roles(self) -> dict[str, Role]:
        return {r.name: self.role(r.name) for r in self.dr.regions}


def configured(dr: DrConfig) -> RegionsView:
    """The view before any witness was read: epoch 0 and the region configured as primary."""
    primary = next(r.name for r in dr.regions if r.role == "primary")
    return RegionsView(dr, 0, primary)


def promotable(view: RegionsView, target: str) -> None:
    """Refuse a promotion that cannot be: an unknown region, a backup (it serves nothing), or the
    region that already is primary. Raises ValueError naming why."""
    try:
        region = view.region(target)
    except KeyError:
        names = [r.name for r in view.dr.regions]
        raise ValueError(f"no region {target!r} (regions: {names})") from None
    if region.role == "backup":
        raise ValueError(f"{target!r} is a backup region: it holds the log, it serves nothing")
    if target == view.primary:
        raise ValueError(f"{target!r} already is the primary (epoch {view.epoch})")
