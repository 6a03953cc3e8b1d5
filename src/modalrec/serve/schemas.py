"""Request and response bodies of the HTTP API (pydantic), which FastAPI turns into the OpenAPI document.

Request models are built per catalogue by :func:`request_models` so that ``k``'s upper bound (the
number of items) is part of the schema. Raw ids are strings; integer ids in JSON are accepted and
read as their decimal string, since most catalogues use numeric ids.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, StrictInt, StrictStr

from modalrec.serve.engine import Strategy

Fallback = Literal["none", "popularity"]


def _as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


RawId = Annotated[StrictStr, BeforeValidator(_as_text, json_schema_input_type=StrictStr | StrictInt)]


class ItemOut(BaseModel):
    """One item of a list: raw id, score (in recommendations), title and image where known."""

    item: str = Field(description="Raw item id, as in the dataset files.")
    score: float | None = Field(None, description="Model score (higher is better); absent in histories.")
    title: str | None = Field(None, description="The item's title, when the dataset has titles.")
    image: str | None = Field(None, description="URL of the item's image (a path on this server or an external URL).")
    explanation: dict[str, Any] | None = Field(
        None,
        description="With explain=true, why the model recommended the item (FindRec: its routing weights over experts "
        "('experts', 'head_experts') and the share of the ID stream and each modality ('streams')).",
    )


class RecommendationOut(BaseModel):
    """A ranked list for one user or session, best first (shorter than k when fewer items are eligible)."""

    user: str | None = Field(None, description="The raw user id (absent for sessions).")
    strategy: Strategy = Field(
        description="How the list was made: 'model' (the trained model), 'item-cosine' / 'co-occurrence' "
        "(item-based session fallback of general models), 'popularity' (fallback)."
    )
    k: int
    items: list[ItemOut]
    unknown_items: list[str] = Field(default_factory=list, description="Posted item ids not in the catalogue (dropped).")
    explain_note: str | None = Field(None, description="With explain=true, why the items carry no explanation (if they do not).")


class BatchOut(BaseModel):
    results: list[RecommendationOut] = Field(
        description="One list per known user (and per unknown user with fallback=popularity), in request order."
    )
    unknown_users: list[str] = Field(default_factory=list, description="Requested user ids not in the dataset.")


class ItemInfo(BaseModel):
    item: str
    title: str | None = None
    image: str | None = None
    popularity: int = Field(description="Interactions with the item in the train split.")
    metadata: dict[str, Any] = Field(description="Every metadata field the dataset has for the item.")


class UserSummary(BaseModel):
    user: str
    n_interactions: int


class UserList(BaseModel):
    total: int
    users: list[UserSummary]


class UserHistory(BaseModel):
    user: str
    n_interactions: int = Field(description="Known interactions of the user (train, valid and test splits).")
    history: list[ItemOut] = Field(description="The most recent interactions, oldest first.")


class Health(BaseModel):
    status: Literal["ok"]


class Info(BaseModel):
    run: str
    model: str
    family: str
    paper: str
    hyperparameters: dict[str, Any] = Field(description="The model's config of the run.")
    dataset: str
    n_users: int
    n_items: int
    statistics: dict[str, Any]
    selected_by: str | None = None
    best_epoch: int | None = None
    metrics: dict[str, dict[str, float]] = Field(description="Validation and test metrics of the served checkpoint.")
    session_strategy: Strategy = Field(description="How POST /recommend scores an ad-hoc session for this model.")
    approximate: bool = Field(description="True when top-K comes from an approximate (faiss) index.")
    explains: bool = Field(False, description="True when explain=true attaches the model's explanation to each item.")
    has_titles: bool
    has_images: bool
    limits: dict[str, int]


class ErrorOut(BaseModel):
    detail: str


class SessionFields(BaseModel):
    """The fields of a session request; :func:`request_models` bounds ``k`` by the catalogue."""

    model_config = ConfigDict(extra="forbid")

    items: list[RawId] = Field(description="Raw item ids, oldest first; unknown ids are reported and dropped.")
    k: int = 10
    exclude_seen: bool = Field(True, description="Leave the session's own items out of the list.")
    explain: bool = Field(False, description="Attach the model's explanation to each item (models that have one).")
    allow: list[RawId] | None = Field(None, description="Only recommend among these items (unknown ids are ignored).")
    deny: list[RawId] = Field(default_factory=list, description="Never recommend these items.")


class BatchFields(BaseModel):
    """The fields of a batch request; :func:`request_models` bounds ``k`` by the catalogue."""

    model_config = ConfigDict(extra="forbid")

    users: list[RawId] = Field(description="Raw user ids.")
    k: int = 10
    exclude_seen: bool = Field(True, description="Leave each user's known items out.")
    fallback: Fallback = Field(
        "none", description="'popularity': popular items for unknown users instead of listing them in unknown_users only."
    )
    explain: bool = Field(False, description="Attach the model's explanation to each item (models that have one).")
    allow: list[RawId] | None = Field(None, description="Only recommend among these items.")
    deny: list[RawId] = Field(default_factory=list, description="Never recommend these items.")


def request_models(
    n_items: int, example_items: list[JsonValue], example_users: list[JsonValue]
) -> tuple[type[SessionFields], type[BatchFields]]:
    """(SessionRequest, BatchRequest) whose ``k`` is bounded by the catalogue size, with examples."""
    K = Annotated[int, Field(ge=1, le=n_items, description=f"How many items, 1..{n_items}.")]

    class SessionRequest(SessionFields):
        """An ad-hoc session: items in the order they were consumed (oldest first)."""

        model_config = ConfigDict(json_schema_extra={"examples": [{"items": example_items, "k": 10}]})

        k: K = 10

    class BatchRequest(BatchFields):
        """Many known users at once (scored in one forward pass)."""

        model_config = ConfigDict(json_schema_extra={"examples": [{"users": example_users, "k": 10}]})

        k: K = 10

    return SessionRequest, BatchRequest
