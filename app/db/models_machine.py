"""Table of the treatment machine profiles (migration 0010 creates and seeds it).

One row per profile, keyed by its name; ``profile`` holds
:meth:`registration.machine.MachineProfile.to_dict`, read back only through
:attr:`MachineProfileRow.machine_profile` so the core checks every stored profile on the way out.
Changes are audited (``machine_profile_set``) with the profile before and after.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.models import Base, UtcDateTime, utcnow
from registration.machine import MachineProfile


class MachineProfileRow(Base):
    __tablename__ = "machine_profiles"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(100))

    @property
    def machine_profile(self) -> MachineProfile:
        return MachineProfile.from_dict(self.profile)
