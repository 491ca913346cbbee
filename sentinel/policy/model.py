"""The policy file, as pydantic models: what each key means, its unit, default and why.

Every model forbids unknown keys. The descriptions are the documentation: ``sentinel
schema`` prints them in the JSON Schema, and the README's key table is generated from them
(``python -m sentinel.policy.docs``). Values are held in plain units: durations in seconds,
sizes in bytes; they print back as written (``15m``, ``512Mi``).

A policy file::

    version: 1
    settings: {sample_interval: 5s, dry_run: false, ...}
    notifiers: {NAME: {type: log}, ...}
    rules:
      - name: NAME
        match: {name: GLOB, labels: {KEY: VALUE}, image: GLOB, runtime: docker, exclude: ...}
        when: {projected_oom_within: 15m, memory_above: {...}, oom_killed: true}
        do: [{restart: {grace_period: 30s}}, {notify: NAME}, ...]
        cooldown: 30m
        max_restarts: {count: 3, per: 24h}
"""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    StringConstraints,
    Tag,
    field_serializer,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sentinel.policy.fields import NAME_PATTERN, Duration, Listen, SignalName, Size

Loc = tuple[str | int, ...]
"""Where in the policy document: keys and list indexes, e.g. ``("rules", 0, "when")``."""

AUTO_COOLDOWN_EVENT = "0s"
AUTO_COOLDOWN = "5m"


def _as_written(text: str) -> Any:
    """A default as people write it (``"5s"``): it shows so in the JSON Schema, and
    ``validate_default`` turns it into the value (seconds)."""
    return text


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        validate_default=True,
        serialize_by_alias=True,
        validate_by_alias=True,
        validate_by_name=True,
    )


# --- settings ----------------------------------------------------------------------------


class Retention(_Model):
    """How long the state file keeps what no decision needs any more."""

    decisions: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("90d"),
        description=(
            "Decisions and actions older than this are removed from the state (with their "
            "evidence: `sentinel events` shows no further back). Never less than the longest "
            "`cooldown` or `max_restarts.per` of the policy: cooldowns and restart budgets "
            "always see their whole window. Default 90d."
        ),
    )
    notifications: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("7d"),
        description=(
            "Notifications accepted by their receiver this long ago are removed from the "
            "outbox (at least the last hour is kept, for grouping storms); a notification not "
            "yet accepted is never removed. Default 7d."
        ),
    )
    gone_targets: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("7d"),
        description=(
            "The memory samples and Slack thread of a target not seen for this long (a "
            "removed container, an exited process) are removed. A target still watched keeps "
            "its newest samples whatever their age. Default 7d."
        ),
    )
    kills: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("365d"),
        description=(
            "Kernel kill records older than this are removed (`sentinel events` shows no "
            "further back). Default 365d."
        ),
    )
    every: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("1h"),
        description=(
            "How often the daemon prunes the state (and once at start), in small "
            "transactions that never hold up a sample tick for long. Default 1h."
        ),
    )


class Settings(_Model):
    """How the daemon runs, whatever the rules say."""

    sample_interval: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("5s"),
        description=(
            "How often each target's memory is sampled and the rules evaluated. Default 5s: "
            "fine enough to see a leak of a few MiB/s coming minutes ahead, at under 1% of a "
            "core for 50 containers."
        ),
    )
    state: Annotated[str, Field(min_length=1)] = Field(
        default="/var/lib/sentinel/state.db",
        description=(
            "SQLite file (WAL) holding kill records, sample history, every decision and action "
            "with its evidence, and the kernel log position. Default /var/lib/sentinel/state.db; "
            "keep it on a volume so that a restart of sentinel neither repeats nor loses a "
            "record, nor repeats an action inside its cooldown."
        ),
    )
    dry_run: bool = Field(
        default=False,
        description=(
            "true: decide and log every decision, never act (no restart, signal, hook, "
            "oom_score_adj or notification). Default false. `sentinel run --dry-run` sets it "
            "too; a rule's own `dry_run: false` cannot override it."
        ),
    )
    listen: Listen = Field(
        default="127.0.0.1:9310",
        description=(
            "host:port of the HTTP endpoints /healthz, /readyz and /metrics (Prometheus). "
            "Default 127.0.0.1:9310: local only, since the metrics name containers; "
            "null: no HTTP endpoint."
        ),
    )
    max_actions_per_minute: Annotated[int, Field(ge=1)] = Field(
        default=10,
        description=(
            "At most this many disruptive actions (restart, signal, run, evict, delete_pod) in "
            "any 60 s, across "
            "all rules and targets; more wait for the next evaluation. Default 10: a bad rule "
            "or a host-wide memory squeeze cannot restart the whole fleet at once. "
            "Notifications, escalations and oom_score_adj are not counted."
        ),
    )
    retention: Retention = Field(
        default_factory=Retention,
        description=(
            "How long the state keeps old decisions, sent notifications, kill records and "
            "the samples of targets gone for long. Cooldowns and budgets read only the "
            "windows the rules use, so a long retention does not slow the daemon down."
        ),
    )


# --- notifiers ---------------------------------------------------------------------------


class LogNotifier(_Model):
    """Writes each notification as one JSON line on stdout (or to the daemon's log)."""

    type: Literal["log"] = Field(
        description=(
            "`log`: one JSON line per notification on stdout, with the rule, the target and "
            "the evidence. Needs no setup; the built-in default policy uses it."
        ),
    )


SLACK_API_URL = "https://slack.com/api/"


def _http_url(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(("http://", "https://")) and value[-3:] != "://":
        return value
    raise PydanticCustomError("http_url", "expected an http:// or https:// URL")


HttpUrl = Annotated[str, BeforeValidator(_http_url)]


def _shown_url(value: str | None) -> str | None:
    """A URL as the policy prints back (``sentinel check``, the start of ``sentinel run``):
    its userinfo and query, which may hold secrets, replaced with ``***``."""
    if value is None:
        return None
    try:
        parts = urllib.parse.urlsplit(value)
    except ValueError:
        return "***"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "***" if parts.query else ""
    fragment = "***" if parts.fragment else ""
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


class SlackNotifier(_Model):
    """Posts to Slack: Block Kit messages with a plain-text fallback, through the Web API
    (a bot token with ``chat:write``) or an incoming webhook. The secret is read from the
    environment or a file when a message is sent; it is never logged nor stored in the state.
    """

    type: Literal["slack"] = Field(
        description=(
            "`slack`: a Block Kit message per kill, restart and escalation (many kills "
            "within a minute: one grouped message), through `chat.postMessage` "
            "(`token_env` or `token_file`, and `channel`) or an incoming webhook "
            "(`webhook_url_env`)."
        ),
    )
    channel: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description=(
            "Channel to post to: an id (`C0123456789`, the sure way) or a name (`#oom-alerts`); "
            "the bot must be a member. Required with a token; an incoming webhook posts to its "
            "own channel and needs none."
        ),
    )
    token_env: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description=(
            "Name of the environment variable holding the bot token (`xoxb-...`), e.g. "
            "`SLACK_BOT_TOKEN`. Give exactly one of `token_env`, `token_file`, "
            "`webhook_url_env`."
        ),
    )
    token_file: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description=(
            "Path of a file holding the bot token (a mounted secret), read at each send so a "
            "rotated token is picked up; surrounding whitespace is ignored."
        ),
    )
    webhook_url_env: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description=(
            "Name of the environment variable holding an incoming-webhook URL "
            "(`https://hooks.slack.com/services/...`). Webhooks cannot reply in threads: "
            "`thread_per_target` needs a token."
        ),
    )
    api_url: HttpUrl = Field(
        default=SLACK_API_URL,
        description=(
            "Base URL of the Slack Web API (methods are appended: `chat.postMessage`). "
            "Default Slack's own; set it for a proxy or a Slack-compatible server."
        ),
    )
    mention: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description=(
            "Who to ping on kills and escalations, in Slack's syntax: a user group "
            "`<!subteam^S0123>`, a user `<@U0123>`, or `<!here>`. Default: nobody."
        ),
    )
    thread_per_target: bool = Field(
        default=False,
        description=(
            "true: the first message about a container starts a thread, and later ones about "
            "it (kills, restarts, escalations) reply there (kills also show in the channel). "
            "The thread of each target is kept in the state. Needs a token. Default false."
        ),
    )
    timeout: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("10s"),
        description=(
            "Give up one attempt after this long; the notification stays queued and is "
            "retried with backoff. Default 10s."
        ),
    )

    @model_validator(mode="after")
    def _one_secret(self) -> SlackNotifier:
        secrets = ("token_env", "token_file", "webhook_url_env")
        given = [k for k in secrets if getattr(self, k) is not None]
        if len(given) != 1:
            raise PydanticCustomError(
                "slack_secret",
                "expected exactly one of `token_env`, `token_file` (with `channel`) or "
                "`webhook_url_env`",
            )
        if self.webhook_url_env is None and self.channel is None:
            raise PydanticCustomError(
                "slack_channel", "expected a `channel` to post to (required with a token)"
            )
        if self.webhook_url_env is not None and self.thread_per_target:
            raise PydanticCustomError(
                "slack_thread",
                "expected `thread_per_target: false` with `webhook_url_env` (an incoming "
                "webhook cannot reply in a thread; use a bot token)",
            )
        return self

    @field_serializer("api_url")
    def _show_api_url(self, value: str) -> str | None:
        return _shown_url(value)


class WebhookNotifier(_Model):
    """POSTs each notification as JSON to a URL: the neutral payload, documented in the README
    ("Webhook payload"): ``kind``, ``rule``, ``target``, ``reason``, ``evidence``, ``text``,
    ``at``, ``host``, and ``record`` for kills. A 2xx answer accepts it."""

    type: Literal["webhook"] = Field(
        description=(
            "`webhook`: one JSON POST per notification (the schema is in the README, "
            '"Webhook payload"); any 2xx accepts it, 429 and 5xx are retried (honouring '
            "Retry-After), other answers are retried at the slowest pace."
        ),
    )
    url: HttpUrl | None = Field(
        default=None,
        description=(
            "The URL to POST to (http or https). Give `url` or `url_env` (prefer `url_env` "
            "when the URL carries a secret). A `user:password@` in it is sent as basic "
            "authentication. Redirects are not followed: a 3xx answer is a failure."
        ),
    )
    url_env: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description=(
            "Name of the environment variable holding the URL (http or https), read at each "
            "send; unset, empty or another scheme is an error."
        ),
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Extra request headers, e.g. `{X-Team: sre}`. A value `${NAME}` is read from "
            "environment variable NAME at send time (for an `Authorization` secret); an "
            "unset or empty NAME is an error. Default: none."
        ),
    )
    timeout: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("10s"),
        description="Give up one attempt after this long (retried later). Default 10s.",
    )

    @model_validator(mode="after")
    def _one_url(self) -> WebhookNotifier:
        if (self.url is None) == (self.url_env is None):
            raise PydanticCustomError("webhook_url", "expected exactly one of `url` or `url_env`")
        return self

    @field_serializer("url")
    def _show_url(self, value: str | None) -> str | None:
        return _shown_url(value)


# A discriminated union on ``type``: every notifier model has a ``type: Literal[...]`` field.
Notifier = Annotated[LogNotifier | SlackNotifier | WebhookNotifier, Field(discriminator="type")]

NotifierName = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]


# --- match -------------------------------------------------------------------------------


class Selector(_Model):
    """Which targets: every key given must match (an empty block matches every target)."""

    model_config = ConfigDict(coerce_numbers_to_str=True)

    name: str | None = Field(
        default=None,
        description=(
            "Glob (`*`, `?`, `[abc]`, case-sensitive) on the container name (without "
            "Docker's leading `/`) or the process name. Default: any name."
        ),
    )
    labels: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Labels that must all be present with exactly these values (a missing label "
            "never matches). Default: none required."
        ),
    )
    image: str | None = Field(
        default=None,
        description=(
            "Glob on the image the container was created from, e.g. `postgres:*`. The "
            "reference is also tried without a `docker.io/` or `docker.io/library/` prefix "
            "and with an implicit `:latest`. Default: any image; a process has none and "
            "never matches an image glob."
        ),
    )
    runtime: Literal["docker", "kubernetes", "process"] | None = Field(
        default=None,
        description=(
            "`docker`: Docker containers; `kubernetes`: the containers of the pods on this "
            "node (`--mode kubernetes`); `process`: plain processes (sidecar mode, or a host "
            "process killed outside any container). Default: all."
        ),
    )
    namespace: str | None = Field(
        default=None,
        description=(
            "Glob on the pod's namespace, e.g. `prod-*` (Kubernetes). Default: any; a target "
            "that is not in a pod never matches a namespace glob."
        ),
    )
    pod_labels: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Labels the pod must carry with exactly these values (Kubernetes). Default: none "
            "required."
        ),
    )
    owner: str | None = Field(
        default=None,
        description=(
            "Glob on the pod's owner as `Kind/name`, e.g. `Deployment/web`, `StatefulSet/*` "
            "(a ReplicaSet's pods are owned by its Deployment; a static pod by `Node/NODE`). "
            "Default: any owner, and pods without one."
        ),
    )


class Match(Selector):
    """Which targets a rule selects. Absent: every target. sentinel itself never matches."""

    exclude: list[Selector] = Field(
        default_factory=list,
        description=(
            "A match block (name, labels, image, runtime, namespace, pod_labels, owner), or "
            "a list of them: targets "
            "matching any of them are removed. Default: none."
        ),
    )

    @field_validator("exclude", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, dict) else value


# --- when --------------------------------------------------------------------------------


class MemoryAbove(_Model):
    """Memory usage above a threshold, without a break, for a while."""

    percent: Annotated[float, Field(gt=0, le=100)] | None = Field(
        default=None,
        description=(
            "Threshold as a percentage of the effective limit: the tightest limit on the "
            "cgroup's path (its own, a parent's such as a pod or `--cgroup-parent`, or host "
            "memory). Give `percent` or `bytes`, not both."
        ),
    )
    bytes: Size | None = Field(
        default=None,
        description="Threshold in bytes (`512Mi`, `1GiB`, `2G`). Give `percent` or `bytes`.",
    )
    for_: Duration = Field(
        default=_as_written("0s"),
        alias="for",
        description=(
            "How long every sample must stay above the threshold before the condition holds. "
            "Default 0s: the latest sample decides. A few sample intervals ride out spikes."
        ),
    )

    @model_validator(mode="after")
    def _one_threshold(self) -> MemoryAbove:
        if (self.percent is None) == (self.bytes is None):
            raise PydanticCustomError(
                "threshold", "expected exactly one of `percent` or `bytes` (and optional `for`)"
            )
        return self


class OomKilled(_Model):
    """The kernel OOM killer killed a process of the target."""

    scope: Literal["any", "host", "cgroup"] = Field(
        default="any",
        description=(
            "`host`: the whole machine ran out (the kill can hit a container below its own "
            "limit); `cgroup`: a memory cgroup hit its limit; `any`: both. Default any. "
            "`oom_killed: true` is short for `{scope: any}`."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        if not isinstance(value, dict | OomKilled):  # false, null, "yes" (YAML 1.2: text)
            raise PydanticCustomError(
                "oom_killed",
                "expected true or {scope: host|cgroup|any} (to never match, leave the key out)",
            )
        return value


class When(_Model):
    """Conditions: every condition given must hold (at least one)."""

    projected_oom_within: Annotated[Duration, Field(gt=0)] | None = Field(
        default=None,
        description=(
            "The forecast says the kernel kills the target within this time (e.g. `15m`), "
            "counted from now. It holds while the forecast is fresh (at most 3 sample "
            "intervals old, and at least 30 s). Leave enough time for `grace_period`."
        ),
    )
    confidence: Literal["confident", "observed"] = Field(
        default="confident",
        description=(
            "Which ETA `projected_oom_within` reads. `confident` (default): the forecast "
            "that has told the growth apart from bursts, batch ramps, warm-ups and queues "
            "(or knows the target leaked before). `observed`: the earlier of that and the "
            "trend of the last minutes, from the first samples on: sooner, and also fires "
            "on ramps that would stop (a batch job loading, a queue filling)."
        ),
    )
    memory_above: MemoryAbove | None = Field(
        default=None,
        description="Usage above `percent` of the effective limit, or above `bytes`, for `for`.",
    )
    oom_killed: OomKilled | None = Field(
        default=None,
        description=(
            "The kernel killed a process of the target: `true`, or `{scope: host|cgroup|any}`. "
            "Each kill is handled once."
        ),
    )

    @model_validator(mode="after")
    def _some_condition(self) -> When:
        if self.projected_oom_within is None and self.memory_above is None and not self.oom_killed:
            raise PydanticCustomError(
                "when_empty",
                "expected at least one of projected_oom_within, memory_above, oom_killed "
                "(or leave out `when` to apply the rule to every matching target)",
            )
        if self.confidence == "observed" and self.projected_oom_within is None:
            raise PydanticCustomError(
                "confidence_alone",
                "confidence says which ETA projected_oom_within reads: give "
                "projected_oom_within too",
            )
        return self

    @property
    def event_triggered(self) -> bool:
        return self.oom_killed is not None


# --- do ----------------------------------------------------------------------------------


def _bare_defaults(value: Any) -> Any:
    """``restart:``, ``restart: null`` or ``restart: true``: the action with its defaults
    (the same for every action whose value is a mapping of options)."""
    return {} if value is None or value is True else value


class RestartSpec(_Model):
    grace_period: Duration = Field(
        default=_as_written("10s"),
        description=(
            "Time between SIGTERM and SIGKILL when stopping (like `docker stop -t`); then the "
            "target is started again. Default 10s, Docker's own."
        ),
    )


class RestartAction(_Model):
    kind: ClassVar[str] = "restart"
    disruptive: ClassVar[bool] = True

    restart: RestartSpec = Field(
        description=(
            "Stop gracefully, then start again; `restart: {}` takes the defaults. Limited by "
            "`max_restarts`. In sidecar mode: SIGTERM to the app's PID 1, whose restart "
            "policy brings it back."
        ),
    )

    @field_validator("restart", mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        return _bare_defaults(value)


class EvictSpec(_Model):
    grace_period: Duration | None = Field(
        default=None,
        description=(
            "The pod's termination grace period for this eviction. Default: the pod's own "
            "(`terminationGracePeriodSeconds`)."
        ),
    )


class EvictAction(_Model):
    kind: ClassVar[str] = "evict"
    disruptive: ClassVar[bool] = True

    evict: EvictSpec = Field(
        description=(
            "Evict the target's pod through the Eviction API (Kubernetes): its controller "
            "makes a new one, PodDisruptionBudgets are honoured (a refusal is retried with "
            "backoff, then escalated once). Refused for a pod without an owner. Counted by "
            "`max_restarts`."
        ),
    )

    @field_validator("evict", mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        return _bare_defaults(value)


class DeletePodAction(_Model):
    kind: ClassVar[str] = "delete_pod"
    disruptive: ClassVar[bool] = True

    delete_pod: EvictSpec = Field(
        description=(
            "Delete the target's pod (Kubernetes; opt-in, and the RBAC must allow it): no "
            "PodDisruptionBudget is asked. Refused for a pod without an owner. Counted by "
            "`max_restarts`."
        ),
    )

    @field_validator("delete_pod", mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        return _bare_defaults(value)


class NotifyAction(_Model):
    kind: ClassVar[str] = "notify"
    disruptive: ClassVar[bool] = False

    notify: str = Field(
        description="Name of a notifier declared under `notifiers`: it receives the decision.",
    )


class OomScoreAdjAction(_Model):
    kind: ClassVar[str] = "oom_score_adj"
    disruptive: ClassVar[bool] = False

    oom_score_adj: Annotated[int, Field(ge=-1000, le=1000)] = Field(
        description=(
            "Write this to `/proc/PID/oom_score_adj` of every process of the target, and "
            "again to new processes and after restarts: -1000 never kill, 1000 kill first. "
            "Protect a database with e.g. -900."
        ),
    )


class SignalAction(_Model):
    kind: ClassVar[str] = "signal"
    disruptive: ClassVar[bool] = True

    signal: SignalName = Field(
        description=(
            "Send this signal to the target's main process, e.g. `SIGUSR2` to ask the app to "
            "dump diagnostics before it is restarted. `USR2` means `SIGUSR2`."
        ),
    )


class RunSpec(_Model):
    command: Annotated[list[str], Field(min_length=1)] = Field(
        description=(
            "Program and arguments (no shell). The target is described in the environment: "
            "SENTINEL_RULE, SENTINEL_TARGET_ID, SENTINEL_TARGET_NAME, SENTINEL_TARGET_IMAGE, "
            "SENTINEL_TARGET_PID, SENTINEL_REASON, SENTINEL_EVIDENCE (JSON). sentinel's "
            "secrets are not: see `pass_env`."
        ),
    )
    pass_env: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] = Field(
        default_factory=list,
        description=(
            "Names of environment variables holding secrets to hand to the hook, e.g. "
            "`[SLACK_BOT_TOKEN]`. Without it a hook gets sentinel's environment less its "
            "secrets: the variables notifiers read, `SLACK_*`, and any holding a token. "
            "Known secrets are redacted from the hook's output either way. Default: none."
        ),
    )
    timeout: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("10s"),
        description="Kill the hook after this long. Default 10s: a hook must not stall sentinel.",
    )

    @model_serializer(mode="wrap")
    def _without_empty_pass_env(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict) and not data.get("pass_env"):
            data.pop("pass_env", None)  # printed back as written: absent when not given
        return data


class RunAction(_Model):
    kind: ClassVar[str] = "run"
    disruptive: ClassVar[bool] = True

    run: RunSpec = Field(
        description="Run a hook, like earlyoom's pre/post-kill scripts.",
    )


class SnapshotSpec(_Model):
    timeout: Annotated[Duration, Field(gt=0)] = Field(
        default=_as_written("10s"),
        description=(
            "How long to wait for the probe's report; then the rule goes on without it (the "
            "action fails, saying so). Default 10s: a report of a large heap takes a few "
            "seconds, and a restart after it must still come before the kill."
        ),
    )
    dir: Annotated[str, Field(min_length=1)] | None = Field(
        default=None,
        description=(
            "The probe's directory (`SENTINEL_PROBE_DIR` in the app) as sentinel sees it, "
            "e.g. a volume both mount; `{name}` and `{id}` stand for the target's name and "
            "id. sentinel writes a request there and reads the report back. Default: the "
            "`SENTINEL_PROBE_DIR` of the target's main process, through `/proc/PID/root` "
            "(needs the host's or the app's PID namespace)."
        ),
    )


class SnapshotAction(_Model):
    kind: ClassVar[str] = "snapshot"
    disruptive: ClassVar[bool] = False

    snapshot: SnapshotSpec = Field(
        description=(
            "Ask the allocation probe in the target (a Python service started with "
            "`sentinel_probe`) for a report: SIGUSR2 to its main process and a request file "
            "in its directory; wait up to `timeout`. The report is kept with the decision "
            "(`sentinel events`) and its top growth sites go into the notifications that "
            "follow in the same rule: put it before `restart` and `notify`. `snapshot: {}` "
            "takes the defaults."
        ),
    )

    @field_validator("snapshot", mode="before")
    @classmethod
    def _bare(cls, value: Any) -> Any:
        return _bare_defaults(value)


RuleAction = (
    RestartAction
    | NotifyAction
    | OomScoreAdjAction
    | SignalAction
    | RunAction
    | EvictAction
    | DeletePodAction
    | SnapshotAction
)
"""One item of a rule's ``do``."""

ACTION_KEYS = (
    "restart",
    "notify",
    "oom_score_adj",
    "signal",
    "run",
    "evict",
    "delete_pod",
    "snapshot",
)
RESTARTING = ("restart", "evict", "delete_pod")
"""Actions that end the target's current run: ``max_restarts`` counts them together."""


def _action_key(value: Any) -> str | None:
    if isinstance(value, dict) and len(value) == 1:
        key = next(iter(value))
        return key if isinstance(key, str) else None
    if isinstance(value, BaseModel):
        return getattr(value, "kind", None)
    return None


Action = Annotated[
    Annotated[RestartAction, Tag("restart")]
    | Annotated[NotifyAction, Tag("notify")]
    | Annotated[OomScoreAdjAction, Tag("oom_score_adj")]
    | Annotated[SignalAction, Tag("signal")]
    | Annotated[RunAction, Tag("run")]
    | Annotated[EvictAction, Tag("evict")]
    | Annotated[DeletePodAction, Tag("delete_pod")]
    | Annotated[SnapshotAction, Tag("snapshot")],
    Discriminator(
        _action_key,
        custom_error_type="action",
        custom_error_message=(
            "expected one action: a mapping with exactly one of the keys "
            "restart, notify, oom_score_adj, signal, run, evict, delete_pod, snapshot"
        ),
    ),
]


# --- rules -------------------------------------------------------------------------------


class MaxRestarts(_Model):
    count: Annotated[int, Field(ge=1)] = Field(
        description="Restarts allowed per target within `per`.",
    )
    per: Annotated[Duration, Field(gt=0)] = Field(
        description="The sliding window the count applies to, e.g. `24h`.",
    )


class Rule(_Model):
    """Which targets, when, and what to do; with the rails that keep it from looping."""

    name: Annotated[str, StringConstraints(pattern=NAME_PATTERN)] = Field(
        description="Unique name of the rule: it appears in every log line, decision and metric.",
    )
    match: Match = Field(
        default_factory=Match,
        description="Which targets the rule selects. Default: every target (never sentinel).",
    )
    when: When | None = Field(
        default=None,
        description=(
            "Conditions that must all hold. Absent: the rule applies to every matching target "
            "(once per start of the target and every `cooldown`); only for non-disruptive "
            "actions (notify, oom_score_adj, snapshot: periodic probe reports for the trend)."
        ),
    )
    do: Annotated[list[Action], Field(min_length=1)] = Field(
        description=(
            "Actions, in order, each a one-key mapping: `restart: {grace_period}`, "
            "`notify: NOTIFIER`, `oom_score_adj: N`, `signal: NAME`, "
            "`run: {command, timeout}`, `evict: {grace_period}`, "
            "`delete_pod: {grace_period}`, `snapshot: {timeout, dir}`."
        ),
    )
    cooldown: Duration = Field(
        default=_as_written(AUTO_COOLDOWN),
        description=(
            "After the rule fires for a target, it does not fire again for that target for "
            "this long. Default 5m; 0s for rules with `oom_killed` (every kill is handled). "
            "Rules without `when` fire again after a restart of the target."
        ),
    )
    max_restarts: MaxRestarts = Field(
        default_factory=lambda: MaxRestarts(count=3, per=86400.0),
        description=(
            "At most `count` restarts of a target by this rule within `per`. Then sentinel "
            'escalates once ("restarts are not helping: likely leak", to the rule\'s '
            "notifiers) and restarts that target no more until a full `per` has passed. "
            "Default {count: 3, per: 24h}."
        ),
    )
    dry_run: bool = Field(
        default=False,
        description=(
            "true: this rule decides and logs, never acts. Default false (the global "
            "`settings.dry_run` still applies)."
        ),
    )
    min_uptime: Duration = Field(
        default=_as_written("0s"),
        description=(
            "Leave a target alone until it has run this long since its last start (a target "
            "whose start time is unknown counts as young). Default 0s."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _auto_cooldown(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("cooldown") is None:
            when = value.get("when")
            if isinstance(when, When):
                event = when.oom_killed is not None
            else:
                event = isinstance(when, dict) and when.get("oom_killed") is not None
            value = {**value, "cooldown": AUTO_COOLDOWN_EVENT if event else AUTO_COOLDOWN}
        return value

    @property
    def notifier_names(self) -> tuple[str, ...]:
        return tuple(a.notify for a in self.do if isinstance(a, NotifyAction))


# --- the policy --------------------------------------------------------------------------


class Policy(_Model):
    """A sentinel policy file."""

    version: Literal[1] = Field(
        default=1,
        description="Policy format version. Default 1, the only one so far.",
    )
    settings: Settings = Field(
        default_factory=Settings,
        description="How the daemon runs.",
    )
    notifiers: dict[NotifierName, Notifier] = Field(
        default_factory=dict,
        description=(
            "Where notifications go, by name (letters, digits, `_`, `.`, `-`). Each has a "
            "`type`: `log`, `slack` or `webhook`."
        ),
    )
    rules: list[Rule] = Field(
        default_factory=list,
        description="The rules, evaluated in order against every target at each sample.",
    )

    @model_validator(mode="after")
    def _references(self) -> Policy:
        problems = reference_problems(self.model_dump(mode="json"))
        if problems:
            raise PydanticCustomError(
                "policy_reference",
                "{problems}",
                {"problems": "; ".join(f"{_dotted(loc)}: {msg}" for loc, msg, _ in problems)},
            )
        return self


def reference_problems(data: Any) -> list[tuple[Loc, str, Any]]:
    """What single keys cannot show: duplicate rule names, notify naming an undeclared
    notifier, a disruptive action in a rule without ``when``.

    Works on raw (even invalid) document data, so that the loader reports these beside the
    other errors of the same file. Returns ``(loc, expected, found)`` triples.
    """
    if not isinstance(data, dict):
        return []
    problems: list[tuple[Loc, str, Any]] = []
    notifiers = data.get("notifiers")
    declared = (
        sorted(k for k in notifiers if isinstance(k, str)) if isinstance(notifiers, dict) else []
    )
    rules = data.get("rules")
    if not isinstance(rules, list):
        return problems
    first_index: dict[str, int] = {}
    for i, rule in enumerate(rules):
        if not isinstance(rule, dict):
            continue
        name = rule.get("name")
        if isinstance(name, str):
            if name in first_index:
                problems.append(
                    (
                        ("rules", i, "name"),
                        f"expected a unique rule name (rules[{first_index[name]}] is also "
                        f"named {name!r})",
                        name,
                    )
                )
            else:
                first_index[name] = i
        do = rule.get("do")
        if not isinstance(do, list):
            continue
        for k, action in enumerate(do):
            if not isinstance(action, dict) or len(action) != 1:
                continue
            ((key, value),) = action.items()
            if key == "notify" and isinstance(value, str) and value not in declared:
                expected = (
                    f"the name of a notifier declared under `notifiers` ({', '.join(declared)})"
                    if declared
                    else "the name of a notifier declared under `notifiers` (none is declared)"
                )
                problems.append((("rules", i, "do", k, "notify"), f"expected {expected}", value))
            if key in ("restart", "signal", "run", "evict", "delete_pod") and (
                rule.get("when") is None
            ):
                problems.append(
                    (
                        ("rules", i, "do", k),
                        f"expected a `when` for `{key}`: a rule without one applies to every "
                        "matching target all the time, so it may only notify or set "
                        "oom_score_adj",
                        {key: value},
                    )
                )
    return problems


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def key_path(loc: Loc) -> str:
    """``("rules", 0, "when", "for")`` -> ``rules[0].when.for``; ``()`` -> ``""``."""
    return _dotted(loc) if loc else ""
