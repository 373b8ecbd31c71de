"""The gateway registry: name -> spec (capabilities, settings models, adapter factory).

The only module outside a gateway's own package that lists the gateways. Adding one means
writing its package (adapter, client, errors, settings, `SPEC`) and its sandbox, then adding
its `SPEC` here.
"""

from __future__ import annotations

from pydantic import SecretStr, ValidationError

from castbridge.config import ConfigError, Settings
from castbridge.gateways.cast import SPEC as CAST
from castbridge.gateways.castbrick import SPEC as CASTBRICK
from castbridge.gateways.cellcast import SPEC as CELLCAST
from castbridge.gateways.spec import GatewayDefaults, GatewaySpec
from castbridge.gateways.ugsms import SPEC as UGSMS

SPECS: dict[str, GatewaySpec] = {spec.name: spec for spec in (CAST, CASTBRICK, CELLCAST, UGSMS)}


class UnknownGateway(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown gateway {self.name!r}; known: {', '.join(names())}"


def names() -> tuple[str, ...]:
    return tuple(SPECS)


def spec(name: str) -> GatewaySpec:
    try:
        return SPECS[name]
    except KeyError:
        raise UnknownGateway(name) from None


def load_defaults(settings: Settings) -> dict[str, GatewayDefaults]:
    """Every gateway's operator defaults (`<NAME>_*` from the environment and the env file,
    overridden by `settings.gateway_settings`); ConfigError lists each bad value by its
    environment name."""
    found: dict[str, GatewayDefaults] = {}
    problems: list[str] = []
    for name, gateway in SPECS.items():
        overrides = settings.gateway_settings.get(name, {})
        try:
            found[name] = gateway.defaults(_env_file=settings.env_file, **overrides)
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else "?"
                problems.append(f"{name.upper()}_{field.upper()}: {error['msg']}")
    if problems:
        raise ConfigError("\n".join(problems))
    return found


def default_key(defaults: GatewayDefaults) -> str | None:
    key: SecretStr | None = defaults.api_key
    return key.get_secret_value() if key is not None else None
