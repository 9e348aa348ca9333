"""The tables of what people check and decide: review sets (the sample drawn), their items, people's labels, and
repeat detection elimination's clusters, runs and members (``shared.db`` names them too)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from shared.columns import Base, UTCDateTime, bigid, created_at, intpk


class ReviewSet(Base):
    """A drawn review sample (WORKFLOW.md, step 3): its parameters, seed and population, so drawing again from
    the same images is the same set, and drawing from a grown archive is a new one (strata sizes change)."""

    __tablename__ = "review_sets"
    __table_args__ = (UniqueConstraint("detector_version_id", "fraction", "all_animals", "seed", "candidates",
                                       name="uq_review_sets_draw"),)  # the convention's name is over 63 characters

    id: Mapped[intpk]
    detector_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    fraction: Mapped[float]
    all_animals: Mapped[bool] = mapped_column(Boolean)
    seed: Mapped[int]
    candidates: Mapped[int]  # classified images drawn from: more images classified later make a new set
    strata: Mapped[str] = mapped_column(String(128))  # e.g. "site,final_label"
    created_at: Mapped[created_at]


class ReviewItem(Base):
    """One image of a review set: its stratum, the stratum's size when drawn, and why it was drawn."""

    __tablename__ = "review_items"

    set_id: Mapped[int] = mapped_column(ForeignKey("review_sets.id", ondelete="CASCADE"), primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), primary_key=True, index=True)
    stratum: Mapped[str] = mapped_column(String(512))
    stratum_size: Mapped[int]
    reason: Mapped[str] = mapped_column(String(16))  # "random" (weighted for accuracy) or "animal" (all animals)


class ReviewLabel(Base):
    """A person's label of one image (Animal, Empty, Human, Bad), with who gave it, when and from where."""

    __tablename__ = "review_labels"
    __table_args__ = (UniqueConstraint("image_id", "reviewer"),)

    id: Mapped[bigid]
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(32))
    reviewer: Mapped[str] = mapped_column(String(128))
    labelled_at: Mapped[datetime] = mapped_column(UTCDateTime())
    source: Mapped[str] = mapped_column(String(1024))  # "labels.csv:12", "web"


class RdeCluster(Base):
    """Boxes recurring at one place in one camera's images (repeat detection elimination), awaiting a
    person's decision: ``suspected``, then ``confirmed`` (its detections are suppressed) or ``rejected``. A
    detection can be a member of several clusters."""

    __tablename__ = "rde_clusters"
    __table_args__ = (Index("ix_rde_clusters_detector_camera", "detector_version_id", "camera"),)

    id: Mapped[intpk]
    detector_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    camera: Mapped[str] = mapped_column(String(512))  # site/camera, as the path pattern read them
    bbox: Mapped[list[float]] = mapped_column(JSON)  # the representative (first) box, normalised x, y, w, h
    category: Mapped[int]  # its first box's detector category (every box's, unless searched across categories)
    instances: Mapped[int]  # its detections, which decide whether it is suspicious (two in one image count two)
    images: Mapped[int]  # the distinct images they lie in
    status: Mapped[str] = mapped_column(String(16), default="suspected")
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # the RdeOptions that found it
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[created_at]


class RdeRun(Base):
    """The last time RDE searched one camera's detections: automatically once every image of the camera had a
    detect outcome, or by `trapline rde`. ``images`` is how many images the camera had then, so the camera is
    searched again automatically when more of its images have been detected since."""

    __tablename__ = "rde_runs"
    __table_args__ = (UniqueConstraint("detector_version_id", "camera"),)

    id: Mapped[intpk]
    detector_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    camera: Mapped[str] = mapped_column(String(512))
    images: Mapped[int]
    boxes: Mapped[int | None]  # None while the search runs (same transaction)
    clusters: Mapped[int | None]
    trigger: Mapped[str] = mapped_column(String(16))  # "auto" (detect worker) or "manual" (trapline rde)
    ran_at: Mapped[datetime] = mapped_column(UTCDateTime())


class RdeMember(Base):
    __tablename__ = "rde_members"

    cluster_id: Mapped[int] = mapped_column(ForeignKey("rde_clusters.id", ondelete="CASCADE"), primary_key=True)
    detection_id: Mapped[int] = mapped_column(ForeignKey("detections.id", ondelete="CASCADE"), primary_key=True,
                                              index=True)
