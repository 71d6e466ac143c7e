"""Label issues: suspected mislabels found from a job's embeddings."""

from __future__ import annotations

import uuid

from pydantic import BaseModel, Field


class LabelIssue(BaseModel):
    index: int = Field(description="position in the dataset")
    sample_id: str
    label: str = Field(description="the label the dataset gives")
    self_confidence: float = Field(
        description="out-of-fold probability of the given label (cleanlab's self-confidence)"
    )


class LabelIssues(BaseModel):
    job_id: uuid.UUID
    method: str = Field(
        default="self_confidence",
        description="5-fold cross-validated multinomial logistic regression on the job's kept "
        "embeddings; a sample's score is the out-of-fold probability of its given label",
    )
    num_samples: int
    share: float | None = None
    threshold: float | None = None
    total: int = Field(description="suspected mislabels in all, least confident first")
    limit: int
    offset: int
    items: list[LabelIssue]


class LabelIssuesPending(BaseModel):
    """202: a worker computes the label issues (once per score set); poll ``url``."""

    job_id: uuid.UUID
    status: str = Field(description="queued or running")
    url: str = Field(description="where to poll (the same request): 200 once they are computed")


class ExcludeSuspected(BaseModel):
    """Leave out suspected mislabels (by self-confidence) before selecting: give one of
    ``share`` or ``threshold``."""

    share: float | None = Field(
        default=None, ge=0, le=1, description="the least confident share of the samples"
    )
    threshold: float | None = Field(
        default=None, ge=0, le=1, description="every sample whose self-confidence is below this"
    )
