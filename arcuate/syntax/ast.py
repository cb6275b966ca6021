"""The AST: one frozen dataclass per statement, with the source span kept out of equality.

``parse(unparse(node)) == node`` holds because spans do not take part in comparison and
synonyms are normalised (``OR REPLACE`` is ``overwrite=True``; entity aliases such as
``metric.`` become ``metrics.``). Imports only the standard library and ``arcuate.errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from arcuate.errors import Span

Flavor = Literal["pandas", "spark"]
Entity = Literal["metrics", "params", "tags", "attributes", "datasets", "metadata", "trace"]
Comparator = Literal["=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN"]
TimeUnit = Literal["SECONDS", "MINUTES", "HOURS", "DAYS"]
RateUnit = Literal["SECOND", "MINUTE", "HOUR", "DAY"]

NO_SPAN = Span(1, 1, 1, 1, 0, 0)
_UNIT_SECONDS = {"SECONDS": 1, "MINUTES": 60, "HOURS": 3600, "DAYS": 86400}


def _span() -> Span:
    return field(default=NO_SPAN, compare=False, repr=False)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class TableName:
    """A table name of 1-3 parts: ``table``, ``schema.table`` or ``catalog.schema.table``."""

    parts: tuple[str, ...]
    span: Span = _span()

    @property
    def table(self) -> str:
        return self.parts[-1]

    @property
    def schema(self) -> str:
        """The share schema the table is listed under (``default`` for a 1-part name)."""
        return self.parts[-2] if len(self.parts) >= 2 else "default"


@dataclass(frozen=True, slots=True)
class Coordinate:
    """``<profile path>#<share>.<schema>.<table>``: where a shared table is read from."""

    profile: str
    share: str
    schema: str
    table: str
    span: Span = _span()

    @property
    def text(self) -> str:
        return f"{self.profile}#{self.share}.{self.schema}.{self.table}"


@dataclass(frozen=True, slots=True)
class Value:
    """A literal in a filter: a string or a number (kept as written, for MLflow)."""

    value: str | float
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Condition:
    """``<entity>.<key> <op> <value(s)>`` in MLflow's search syntax."""

    entity: Entity
    key: str
    op: Comparator
    values: tuple[Value, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ExperimentSource:
    """``FROM EXPERIMENT name [WHERE ...] [INCLUDING DATASETS, SCORERS, TRACES [WHERE ...]]``."""

    name: str
    where: tuple[Condition, ...] = ()
    span: Span = _span()
    #: what travels with the runs: ``"datasets"``, ``"scorers"``, ``"traces"`` (each once, in
    #: this order)
    including: tuple[str, ...] = ()
    #: ``INCLUDING TRACES WHERE ...``: conditions in MLflow's trace search syntax
    trace_where: tuple[Condition, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelSource:
    """``FROM MODEL name [VERSION n, ... | ALIAS a, ...]``."""

    name: str
    versions: tuple[int, ...] = ()
    aliases: tuple[str, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class PromptSource:
    """``FROM PROMPT name [VERSION n, ... | ALIAS a, ...]``."""

    name: str
    versions: tuple[int, ...] = ()
    aliases: tuple[str, ...] = ()
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class RedactItem:
    """One REDACT rule: ``params|tags MATCHING 'regex'``, ``ARTIFACTS MATCHING 'glob'`` or
    ``DATASETS SOURCES``, each optionally ``HASH`` (a keyed hash instead of dropping)."""

    target: Literal["params", "tags", "artifacts", "datasets"]
    pattern: str | None = None
    hash: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CreateShare:
    """Export an experiment, model or prompt to a Delta table and add it to a share."""

    share: str
    table: TableName
    source: ExperimentSource | ModelSource | PromptSource
    if_not_exists: bool = False
    span: Span = _span()
    #: SIGNED BY '<private key>': the table carries a signature (issue 16); with
    #: ``signing_certificate``, the key of SIGNED BY CERTIFICATE '<leaf>' KEY '<key>'
    signing_key: str | None = None
    #: REDACT …: what is dropped or hashed before rows are built (issue 16)
    redact: tuple[RedactItem, ...] = ()
    #: SIGNED BY CERTIFICATE '<leaf certificate>' KEY … [CHAIN '<intermediates>', …]
    signing_certificate: str | None = None
    signing_chain: tuple[str, ...] = ()
    #: SIGNED BY SIGSTORE: Sigstore keyless signing (needs a network and an OIDC identity)
    signing_sigstore: bool = False


@dataclass(frozen=True, slots=True)
class CreateExperiment:
    """Import a shared experiment table into an MLflow experiment."""

    name: str
    coordinate: Coordinate
    flavor: Flavor = "pandas"
    overwrite: bool = False
    #: REFUSE PICKLE: no file whose loading unpickles (the serialization policy)
    refuse_pickle: bool = False
    span: Span = _span()
    #: VERIFIED BY '<public key or certificate>': refuse a table that does not verify
    verify_key: str | None = None
    #: VERIFIED BY CA: ``verify_key`` names the CA certificate(s) the signer's chains to
    verify_ca: bool = False


@dataclass(frozen=True, slots=True)
class CreateModel:
    """Import a shared model table into a registered model."""

    name: str
    coordinate: Coordinate
    flavor: Flavor = "pandas"
    overwrite: bool = False
    #: REFUSE PICKLE: no file whose loading unpickles (the serialization policy)
    refuse_pickle: bool = False
    span: Span = _span()
    #: VERIFIED BY '<public key or certificate>': refuse a table that does not verify
    verify_key: str | None = None
    #: VERIFIED BY CA: ``verify_key`` names the CA certificate(s) the signer's chains to
    verify_ca: bool = False


@dataclass(frozen=True, slots=True)
class CreatePrompt:
    """Import a shared prompt table into an MLflow prompt."""

    name: str
    coordinate: Coordinate
    flavor: Flavor = "pandas"
    overwrite: bool = False
    span: Span = _span()
    #: VERIFIED BY '<public key or certificate>': refuse a table that does not verify
    verify_key: str | None = None
    #: VERIFIED BY CA: ``verify_key`` names the CA certificate(s) the signer's chains to
    verify_ca: bool = False


@dataclass(frozen=True, slots=True)
class DescribeShared:
    """Preview a shared table without importing it."""

    coordinate: Coordinate
    span: Span = _span()
    #: VERIFIED BY: whether the table's signature verifies with this key
    verify_key: str | None = None
    #: VERIFIED BY CA: ``verify_key`` names the CA certificate(s) the signer's chains to
    verify_ca: bool = False


@dataclass(frozen=True, slots=True)
class ShowProviderShares:
    """``SHOW SHARES IN PROVIDER '<profile>'``: what a profile file can read, table by table."""

    profile: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Expiry:
    """``EXPIRES IN <n> <unit>``: a token lifetime."""

    amount: int
    unit: TimeUnit
    span: Span = _span()

    @property
    def seconds(self) -> int:
        return self.amount * _UNIT_SECONDS[self.unit]


@dataclass(frozen=True, slots=True)
class OAuth:
    """``USING OAUTH [ACCESS TOKEN LIFETIME <n> <unit>]``: an OAuth client-credentials
    recipient, whose client asks the server's token endpoint for short-lived access tokens."""

    access_token_lifetime: Expiry | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ActivationLink:
    """``ACTIVATION LINK [VALID FOR <n> <unit>]``: a one-time URL the recipient downloads its
    profile from, instead of a profile file (the credential is made when it is used)."""

    valid_for: Expiry | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class CreateRecipient:
    """Create a recipient and its bearer token, written to the recipient's profile file.

    ``show_token``: also print the profile once, on a terminal only (``SHOW TOKEN``).
    ``oauth``: a client id and secret instead of a bearer token (``USING OAUTH``).
    ``activation_link``: no profile file; a one-time link to download it (``ACTIVATION LINK``).
    """

    name: str
    if_not_exists: bool = False
    comment: str | None = None
    expires: Expiry | None = None
    profile: str | None = None
    span: Span = _span()
    show_token: bool = False
    oauth: OAuth | None = None
    activation_link: ActivationLink | None = None


@dataclass(frozen=True, slots=True)
class RotateToken:
    """``ALTER RECIPIENT r ROTATE TOKEN``: replace a recipient's token (or OAuth client
    secret); ``keep_old``: the old one works this much longer (``KEEP OLD FOR``)."""

    name: str
    expires: Expiry | None = None
    profile: str | None = None
    span: Span = _span()
    show_token: bool = False
    keep_old: Expiry | None = None
    activation_link: ActivationLink | None = None


@dataclass(frozen=True, slots=True)
class DropRecipient:
    name: str
    if_exists: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Grant:
    """``GRANT SELECT ON SHARE s TO RECIPIENT r``."""

    share: str
    recipient: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Revoke:
    """``REVOKE SELECT ON SHARE s FROM RECIPIENT r``."""

    share: str
    recipient: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class RemoveTable:
    """``ALTER SHARE s REMOVE TABLE t``."""

    share: str
    table: TableName
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DropShare:
    name: str
    if_exists: bool = False
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ShowShares:
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ShowRecipients:
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ShowAllInShare:
    share: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DescribeShare:
    share: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class DescribeRecipient:
    name: str
    span: Span = _span()


# -- access: IP access lists, rate limits, the access log (issue 15) ---------------------------
@dataclass(frozen=True, slots=True)
class SetIpAccessList:
    """``ALTER RECIPIENT r SET IP ACCESS LIST ('10.0.0.0/8', ...)``: where ``r`` may connect
    from. The entries are checked by the planner (each keeps its span for the error)."""

    name: str
    entries: tuple[Value, ...]
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class UnsetIpAccessList:
    """``ALTER RECIPIENT r UNSET IP ACCESS LIST``: from anywhere again."""

    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class SetRateLimit:
    """``ALTER RECIPIENT r SET RATE LIMIT n REQUESTS PER <unit>``."""

    name: str
    requests: int
    per: RateUnit
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class UnsetRateLimit:
    """``ALTER RECIPIENT r UNSET RATE LIMIT``."""

    name: str
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ShowAccessLog:
    """``SHOW ACCESS LOG [FOR RECIPIENT r] [ON SHARE s] [SINCE '...'] [LIMIT n]``."""

    recipient: str | None = None
    share: str | None = None
    since: Value | None = None
    limit: int | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class ShowRecipientUsage:
    """``SHOW RECIPIENT USAGE [FOR RECIPIENT r] [ON SHARE s] [SINCE '...']``."""

    recipient: str | None = None
    share: str | None = None
    since: Value | None = None
    span: Span = _span()


@dataclass(frozen=True, slots=True)
class Explain:
    """``EXPLAIN <statement>``: show the plan, touch nothing."""

    statement: Statement
    span: Span = _span()


Statement = (
    CreateShare
    | CreateExperiment
    | CreateModel
    | CreatePrompt
    | DescribeShared
    | ShowProviderShares
    | CreateRecipient
    | RotateToken
    | DropRecipient
    | Grant
    | Revoke
    | RemoveTable
    | DropShare
    | ShowShares
    | ShowRecipients
    | ShowAllInShare
    | DescribeShare
    | DescribeRecipient
    | SetIpAccessList
    | UnsetIpAccessList
    | SetRateLimit
    | UnsetRateLimit
    | ShowAccessLog
    | ShowRecipientUsage
    | Explain
)


@dataclass(frozen=True, slots=True)
class Script:
    """The statements of one text, in order, with the text they came from."""

    statements: tuple[Statement, ...]
    text: str = field(default="", compare=False, repr=False)
    source: str = field(default="<string>", compare=False, repr=False)
