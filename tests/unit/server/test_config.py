"""Configuration: defaults, the example file, env overrides, precedence and named errors."""

import dataclasses
import tomllib
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from server.config import (
    Config,
    ConfigError,
    community_currencies,
    find_config_file,
    is_loopback_host,
    load_config,
    redacted_database_url,
    render_example,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _error(excinfo: pytest.ExceptionInfo[ConfigError], key: str) -> str:
    """The message of a ConfigError, after checking it names `key` first."""
    message = str(excinfo.value)
    assert excinfo.value.key == key
    assert message.startswith(key), message
    return message


def _all_keys() -> list[tuple[str, str]]:
    return [
        (section.name, key.name)
        for section in dataclasses.fields(Config)
        for key in dataclasses.fields(section.default_factory())
    ]


# --- defaults -----------------------------------------------------------------------------


def test_defaults_make_a_development_node_on_localhost_8080(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    assert config.domain == "localhost:8080"
    assert config.base_url == "http://localhost:8080"
    assert config.server.host == "127.0.0.1"
    assert config.server.port == 8080
    assert config.federation.allow_private_addresses is False
    assert config.logging.level == "info"
    assert config.logging.format == "text"


def test_default_data_dir_is_kith_data_under_the_working_directory(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    assert config.data_dir == (tmp_path / "kith-data").resolve()
    assert config.data_dir.is_absolute()


def test_default_database_is_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    config = load_config(environ={}, cwd=tmp_path)
    expected = (tmp_path / "kith-data" / "kith.db").resolve()
    assert config.database.url == f"sqlite+aiosqlite:///{expected}"


# --- the example file ---------------------------------------------------------------------


def test_repository_config_example_is_exactly_the_rendered_example() -> None:
    # config.example.toml is generated from the dataclasses; regenerate it with
    # `kith config example > config.example.toml` when a key or its doc changes.
    example = REPO_ROOT / "config.example.toml"
    assert example.is_file(), f"{example} is missing"
    assert example.read_text(encoding="utf-8") == render_example()


def test_example_is_valid_toml_with_every_section() -> None:
    parsed = tomllib.loads(render_example())
    assert set(parsed) == {f.name for f in dataclasses.fields(Config)}


def test_example_lists_every_key_with_its_default() -> None:
    parsed = tomllib.loads(render_example())
    defaults = Config()
    for section, key in _all_keys():
        assert key in parsed[section], f"{section}.{key} missing from the example"
        default = getattr(getattr(defaults, section), key)
        assert parsed[section][key] == (list(default) if isinstance(default, tuple) else default)


def test_example_documents_every_key_with_a_comment() -> None:
    lines = render_example().splitlines()
    for section, key in _all_keys():
        index = next(
            i
            for i, line in enumerate(lines)
            if line.startswith(f"{key} = ") and f"[{section}]" in lines[:i]
        )
        assert lines[index - 1].startswith("#"), f"{section}.{key} has no comment"


def test_loading_the_example_gives_the_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path / "config.toml", render_example())
    assert load_config(path, environ={}, cwd=tmp_path / "elsewhere") == load_config(
        environ={}, cwd=tmp_path
    )


def test_loading_the_repository_example_gives_the_defaults() -> None:
    path = REPO_ROOT / "config.example.toml"
    assert load_config(path, environ={}, cwd=Path("/nonexistent")) == load_config(
        environ={}, cwd=REPO_ROOT
    )


def test_render_example_sets_the_given_values(tmp_path: Path) -> None:
    text = render_example({"server.port": 9000, "instance.domain": "kith.example"})
    assert "port = 9000" in text
    assert 'domain = "kith.example"' in text
    config = load_config(_write(tmp_path / "c.toml", text), environ={}, cwd=tmp_path)
    assert config.server.port == 9000
    assert config.domain == "kith.example"
    assert config.base_url == "https://kith.example"


def test_render_example_refuses_an_unknown_key() -> None:
    with pytest.raises(ConfigError) as excinfo:
        render_example({"server.nope": 1})
    _error(excinfo, "server.nope")


@given(st.text(max_size=40))
@example("tab\there")
@example('quote " and backslash \\')
@example("line\nbreak")
@example("delete \x7f character")
def test_render_example_writes_any_string_value_as_valid_toml(text: str) -> None:
    # `kith init` writes operator-given strings (domain, database URL, paths) this way.
    parsed = tomllib.loads(render_example({"instance.description": text}))
    assert parsed["instance"]["description"] == text


# --- environment overrides ----------------------------------------------------------------


def test_env_overrides_port_and_the_derived_domain_and_base_url(tmp_path: Path) -> None:
    config = load_config(environ={"KITH_SERVER__PORT": "9000"}, cwd=tmp_path)
    assert config.server.port == 9000
    assert config.domain == "localhost:9000"
    assert config.base_url == "http://localhost:9000"


@pytest.mark.parametrize("text", ["1", "true", "TRUE", "yes", "on", " True "])
def test_env_true_spellings_parse_as_true(tmp_path: Path, text: str) -> None:
    config = load_config(environ={"KITH_FEDERATION__ALLOW_PRIVATE_ADDRESSES": text}, cwd=tmp_path)
    assert config.federation.allow_private_addresses is True


@pytest.mark.parametrize("text", ["0", "false", "No", "off"])
def test_env_false_spellings_parse_as_false(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path / "c.toml", "[federation]\nallow_private_addresses = true\n")
    environ = {"KITH_FEDERATION__ALLOW_PRIVATE_ADDRESSES": text}
    config = load_config(path, environ=environ, cwd=tmp_path)
    assert config.federation.allow_private_addresses is False


def test_env_sets_strings_verbatim(tmp_path: Path) -> None:
    environ = {"KITH_INSTANCE__NAME": "My Kith", "KITH_LOGGING__FORMAT": "json"}
    config = load_config(environ=environ, cwd=tmp_path)
    assert config.instance.name == "My Kith"
    assert config.logging.format == "json"


def test_env_variables_without_a_section_separator_are_not_config_keys(tmp_path: Path) -> None:
    environ = {
        "KITH_CONFIG": "/nonexistent.toml",
        "KITH_TEST_POSTGRES_URL": "postgresql://x",
        "HOME": "/root",
    }
    assert load_config(environ=environ, cwd=tmp_path) == load_config(environ={}, cwd=tmp_path)


def test_unknown_env_variable_error_names_the_variable_and_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"KITH_X__Y": "1"}, cwd=tmp_path)
    assert "KITH_X__Y" in _error(excinfo, "x.y")


def test_unknown_key_in_a_known_section_from_env_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"KITH_SERVER__PROT": "80"}, cwd=tmp_path)
    assert "KITH_SERVER__PROT" in _error(excinfo, "server.prot")


def test_env_bool_that_is_not_a_bool_names_the_variable(tmp_path: Path) -> None:
    environ = {"KITH_FEDERATION__ALLOW_PRIVATE_ADDRESSES": "maybe"}
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ=environ, cwd=tmp_path)
    message = _error(excinfo, "federation.allow_private_addresses")
    assert "KITH_FEDERATION__ALLOW_PRIVATE_ADDRESSES" in message
    assert "maybe" in message


def test_env_int_that_is_not_an_int_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"KITH_SERVER__PORT": "eighty"}, cwd=tmp_path)
    assert "KITH_SERVER__PORT" in _error(excinfo, "server.port")


# --- precedence ---------------------------------------------------------------------------


def test_file_beats_defaults_env_beats_file_and_overrides_beat_env(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml", "[server]\nport = 8001\n")
    environ = {"KITH_SERVER__PORT": "8002"}
    assert load_config(path, environ={}, cwd=tmp_path).server.port == 8001
    assert load_config(path, environ=environ, cwd=tmp_path).server.port == 8002
    overridden = load_config(path, environ=environ, overrides={"server.port": 8003}, cwd=tmp_path)
    assert overridden.server.port == 8003


def test_override_of_none_leaves_the_lower_layer(tmp_path: Path) -> None:
    environ = {"KITH_SERVER__PORT": "8002"}
    config = load_config(environ=environ, overrides={"server.port": None}, cwd=tmp_path)
    assert config.server.port == 8002


def test_string_overrides_are_coerced_like_env_values(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"server.port": "8004"}, cwd=tmp_path)
    assert config.server.port == 8004


def test_unknown_override_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={}, overrides={"server.nope": 1}, cwd=tmp_path)
    _error(excinfo, "server.nope")


def test_layers_merge_key_by_key(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.toml", '[instance]\nname = "From file"\n[server]\nport = 8001\n')
    config = load_config(path, environ={"KITH_SERVER__PORT": "8002"}, cwd=tmp_path)
    assert config.instance.name == "From file"
    assert config.server.port == 8002


# --- errors in files and values -----------------------------------------------------------


def _load_text(tmp_path: Path, text: str) -> Config:
    return load_config(_write(tmp_path / "c.toml", text), environ={}, cwd=tmp_path)


def test_unknown_section_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load_text(tmp_path, "[srever]\nport = 1\n")
    assert "unknown section" in _error(excinfo, "srever")


def test_unknown_key_in_file_is_refused_with_the_file_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load_text(tmp_path, "[server]\nprot = 1\n")
    message = _error(excinfo, "server.prot")
    assert "unknown key" in message
    assert str(tmp_path / "c.toml") in message


def test_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load_text(tmp_path, "server = 1\n")
    _error(excinfo, "server")


@pytest.mark.parametrize(
    ("text", "key"),
    [
        pytest.param('[server]\nport = "8080"\n', "server.port", id="port-as-string"),
        pytest.param("[server]\nport = 80.5\n", "server.port", id="port-as-float"),
        pytest.param("[server]\nport = true\n", "server.port", id="port-as-bool"),
        pytest.param(
            '[federation]\nallow_private_addresses = "yes"\n',
            "federation.allow_private_addresses",
            id="bool-as-string",
        ),
        pytest.param("[instance]\nname = 5\n", "instance.name", id="name-as-int"),
        pytest.param("[database]\npool_size = [1]\n", "database.pool_size", id="int-as-list"),
    ],
)
def test_wrong_type_in_file_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load_text(tmp_path, text)
    _error(excinfo, key)


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"KITH_SERVER__PORT": "65536"}, "server.port"),
        ({"KITH_SERVER__PORT": "-1"}, "server.port"),
        ({"KITH_SERVER__HOST": "  "}, "server.host"),
        ({"KITH_LOGGING__LEVEL": "verbose"}, "logging.level"),
        ({"KITH_LOGGING__LEVEL": "INFO"}, "logging.level"),
        ({"KITH_LOGGING__FORMAT": "xml"}, "logging.format"),
        ({"KITH_STORAGE__DATA_DIR": " "}, "storage.data_dir"),
        ({"KITH_DATABASE__POOL_SIZE": "0"}, "database.pool_size"),
        ({"KITH_DATABASE__BUSY_TIMEOUT_MS": "-5"}, "database.busy_timeout_ms"),
        ({"KITH_INSTANCE__NAME": ""}, "instance.name"),
        ({"KITH_INSTANCE__DOMAIN": "https://kith.example"}, "instance.domain"),
        ({"KITH_INSTANCE__DOMAIN": "kith.example/social"}, "instance.domain"),
        ({"KITH_INSTANCE__DOMAIN": "kith.example:http"}, "instance.domain"),
        ({"KITH_INSTANCE__DOMAIN": "alice@kith.example"}, "instance.domain"),
        ({"KITH_INSTANCE__BASE_URL": "https://kith.example/kith"}, "instance.base_url"),
        ({"KITH_INSTANCE__BASE_URL": "https://kith.example?x=1"}, "instance.base_url"),
        ({"KITH_INSTANCE__BASE_URL": "ftp://kith.example"}, "instance.base_url"),
        ({"KITH_INSTANCE__BASE_URL": "kith.example"}, "instance.base_url"),
        ({"KITH_INSTANCE__BASE_URL": "https://kith.example:99999"}, "instance.base_url"),
        ({"KITH_DATABASE__URL": "mysql://kith@db/kith"}, "database.url"),
        ({"KITH_DATABASE__URL": "sqlite:///:memory:"}, "database.url"),
        ({"KITH_DATABASE__URL": "sqlite://"}, "database.url"),
        ({"KITH_DATABASE__URL": "not a url"}, "database.url"),
    ],
)
def test_invalid_value_is_refused_naming_the_key(
    tmp_path: Path, environ: dict[str, str], key: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ=environ, cwd=tmp_path)
    _error(excinfo, key)


def test_unsupported_database_error_says_which_databases_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={"KITH_DATABASE__URL": "mysql://kith@db/kith"}, cwd=tmp_path)
    message = _error(excinfo, "database.url")
    assert "mysql" in message
    assert "postgresql+asyncpg" in message


def test_invalid_toml_is_refused_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as excinfo:
        _load_text(tmp_path, "[server\nport = \n")
    assert str(tmp_path / "c.toml") in _error(excinfo, "config")


def test_missing_file_is_refused_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as excinfo:
        load_config(missing, environ={}, cwd=tmp_path)
    assert str(missing) in _error(excinfo, "config")


def test_port_zero_is_allowed_for_an_ephemeral_port(tmp_path: Path) -> None:
    assert load_config(environ={"KITH_SERVER__PORT": "0"}, cwd=tmp_path).server.port == 0


# --- paths --------------------------------------------------------------------------------


def test_relative_data_dir_in_a_file_is_taken_from_the_files_directory(tmp_path: Path) -> None:
    path = _write(tmp_path / "etc" / "config.toml", '[storage]\ndata_dir = "data"\n')
    config = load_config(path, environ={}, cwd=tmp_path / "run")
    assert config.data_dir == (tmp_path / "etc" / "data").resolve()


def test_relative_data_dir_from_env_is_taken_from_the_working_directory(tmp_path: Path) -> None:
    path = _write(tmp_path / "etc" / "config.toml", '[storage]\ndata_dir = "data"\n')
    config = load_config(path, environ={"KITH_STORAGE__DATA_DIR": "envdata"}, cwd=tmp_path / "run")
    assert config.data_dir == (tmp_path / "run" / "envdata").resolve()


def test_default_data_dir_with_a_file_that_does_not_set_it_uses_the_working_directory(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "etc" / "config.toml", "[server]\nport = 8001\n")
    config = load_config(path, environ={}, cwd=tmp_path / "run")
    assert config.data_dir == (tmp_path / "run" / "kith-data").resolve()


def test_absolute_data_dir_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "abs"
    config = load_config(environ={"KITH_STORAGE__DATA_DIR": str(target)}, cwd=tmp_path / "x")
    assert config.data_dir == target.resolve()


def test_default_sqlite_database_follows_the_data_dir(tmp_path: Path) -> None:
    path = _write(tmp_path / "etc" / "config.toml", '[storage]\ndata_dir = "data"\n')
    config = load_config(path, environ={}, cwd=tmp_path)
    expected = (tmp_path / "etc" / "data" / "kith.db").resolve()
    assert config.database.url == f"sqlite+aiosqlite:///{expected}"


# --- derived and normalised values --------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "base_url"),
    [
        ("kith.example", "https://kith.example"),
        ("Kith.Example", "https://kith.example"),
        ("kith.example:8443", "https://kith.example:8443"),
        ("127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("localhost", "http://localhost"),
        ("node1.localhost:9000", "http://node1.localhost:9000"),
        ("bücher.example", "https://xn--bcher-kva.example"),
    ],
)
def test_base_url_defaults_to_https_of_the_domain_except_on_loopback(
    tmp_path: Path, domain: str, base_url: str
) -> None:
    config = load_config(environ={"KITH_INSTANCE__DOMAIN": domain}, cwd=tmp_path)
    assert config.base_url == base_url


def test_explicit_base_url_may_differ_from_the_domain(tmp_path: Path) -> None:
    environ = {
        "KITH_INSTANCE__DOMAIN": "kith.example",
        "KITH_INSTANCE__BASE_URL": "HTTP://127.0.0.1:9000/",
    }
    config = load_config(environ=environ, cwd=tmp_path)
    assert config.domain == "kith.example"
    assert config.base_url == "http://127.0.0.1:9000"


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        (
            "postgresql://kith:pw@db.example:5432/kith",
            "postgresql+asyncpg://kith:pw@db.example:5432/kith",
        ),
        ("postgres://kith:pw@db.example/kith", "postgresql+asyncpg://kith:pw@db.example/kith"),
        ("postgresql+asyncpg://kith@db/kith", "postgresql+asyncpg://kith@db/kith"),
        ("sqlite:////var/lib/kith/kith.db", "sqlite+aiosqlite:////var/lib/kith/kith.db"),
        ("sqlite+aiosqlite:////var/lib/kith/kith.db", "sqlite+aiosqlite:////var/lib/kith/kith.db"),
    ],
)
def test_database_url_is_normalised_to_the_async_driver(
    tmp_path: Path, url: str, normalised: str
) -> None:
    config = load_config(environ={"KITH_DATABASE__URL": url}, cwd=tmp_path)
    assert config.database.url == normalised


def test_database_password_with_special_characters_survives_normalisation(
    tmp_path: Path,
) -> None:
    url = "postgresql://kith:p%40ss%2Fw0rd@db/kith"
    config = load_config(environ={"KITH_DATABASE__URL": url}, cwd=tmp_path)
    assert config.database.url == "postgresql+asyncpg://kith:p%40ss%2Fw0rd@db/kith"


def test_redacted_database_url_hides_the_password() -> None:
    redacted = redacted_database_url("postgresql+asyncpg://kith:s3cret@db.example:5432/kith")
    assert "s3cret" not in redacted
    assert redacted == "postgresql+asyncpg://kith:***@db.example:5432/kith"


def test_redacted_database_url_leaves_a_url_without_password_alone() -> None:
    assert redacted_database_url("sqlite+aiosqlite:////tmp/k.db") == "sqlite+aiosqlite:////tmp/k.db"


# --- finding the file ---------------------------------------------------------------------


def test_find_config_file_prefers_the_command_line(tmp_path: Path) -> None:
    _write(tmp_path / "kith-data" / "config.toml", "")
    found = find_config_file("/etc/kith.toml", {"KITH_CONFIG": "/env.toml"}, tmp_path)
    assert found == Path("/etc/kith.toml")


def test_find_config_file_uses_kith_config_without_a_command_line_path(tmp_path: Path) -> None:
    _write(tmp_path / "kith-data" / "config.toml", "")
    assert find_config_file(None, {"KITH_CONFIG": "/env.toml"}, tmp_path) == Path("/env.toml")


def test_find_config_file_falls_back_to_the_data_dir_file_when_present(tmp_path: Path) -> None:
    default = _write(tmp_path / "kith-data" / "config.toml", "")
    assert find_config_file(None, {"KITH_CONFIG": ""}, tmp_path) == default


def test_find_config_file_returns_none_when_nothing_is_configured(tmp_path: Path) -> None:
    assert find_config_file(None, {}, tmp_path) is None


def test_find_config_file_ignores_a_directory_named_like_the_default(tmp_path: Path) -> None:
    (tmp_path / "kith-data" / "config.toml").mkdir(parents=True)
    assert find_config_file(None, {}, tmp_path) is None


# --- loopback -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "::1", "[::1]", "node2.localhost"],
)
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert is_loopback_host(host)


@pytest.mark.parametrize(
    "host",
    [
        "kith.example",
        "10.0.0.1",
        "192.168.1.1",
        "0.0.0.0",  # noqa: S104 - a host name compared, not bound
        "localhost.example",
        "notlocalhost",
    ],
)
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback_host(host)


def test_a_domain_whose_first_label_is_127_is_not_loopback() -> None:
    # Only an IPv4 literal in 127.0.0.0/8 is loopback; 127.example.com is a public DNS
    # name, and a node named so must default to an https base URL (actor ids depend on it).
    assert not is_loopback_host("127.example.com")


def test_a_public_domain_starting_with_127_gets_an_https_base_url(tmp_path: Path) -> None:
    config = load_config(environ={"KITH_INSTANCE__DOMAIN": "127.example.com"}, cwd=tmp_path)
    assert config.base_url == "https://127.example.com"


def test_blocked_domains_come_from_a_toml_list_or_a_comma_separated_variable(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path / "c.toml", '[federation]\nblocked_domains = ["Spam.Example."]\n')
    assert load_config(path, environ={}).federation.blocked_domains == ("spam.example",)
    env = {"KITH_FEDERATION__BLOCKED_DOMAINS": "a.example, b.example"}
    assert load_config(None, environ=env).federation.blocked_domains == ("a.example", "b.example")
    with pytest.raises(ConfigError, match=r"federation\.blocked_domains"):
        load_config(None, environ={"KITH_FEDERATION__BLOCKED_DOMAINS": '["a b"]'})


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("HOURS", '"CODE:SCALE"'),
        ("HOURS:x", '"CODE:SCALE"'),
        ("HOURS:9", "0 to 8"),
        ("EUR:0", "ISO 4217"),
        ("h:0", "not a currency code"),
    ],
)
def test_a_community_currency_that_cannot_work_is_refused_naming_the_key(
    tmp_path: Path, entry: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_config(environ={}, overrides={"payments.community_currencies": [entry]}, cwd=tmp_path)
    assert reason in _error(excinfo, "payments.community_currencies")


def test_community_currencies_come_with_their_scales(tmp_path: Path) -> None:
    config = load_config(
        environ={"KITH_PAYMENTS__COMMUNITY_CURRENCIES": "HOURS:0, SEEDS:2"}, cwd=tmp_path
    )
    assert community_currencies(config) == {"HOURS": 0, "SEEDS": 2}
