#!/usr/bin/env python3
"""Checks docker-compose.yml where no Docker engine runs (this project's CI):

- it validates against the Compose Specification's JSON schema (scripts/compose-spec/,
  vendored from github.com/compose-spec/compose-spec with its licence);
- every service, volume and network it refers to is defined;
- every environment variable given to our binary is one it reads, spelled as
  `webhooks <command> --help` spells it (a typo would be silently ignored by the binary);
- every service that runs our HTTP server (on a published port) requires its secrets with
  Compose's `${VAR:?message}`, so that Compose refuses to start it open, and none sets INSECURE.

Usage: scripts/check_compose.py PATH/TO/webhooks [docker-compose.yml]
       scripts/check_compose.py --self-test PATH/TO/webhooks   (the checks catch planted faults)
"""
import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "scripts" / "compose-spec" / "compose-spec.json"
# Read by the binary but not a flag, so not in --help: tracing's log filter.
READ_WITHOUT_FLAG = {"RUST_LOG"}
# The commands that serve the HTTP API, and the secrets each must be given.
SERVING = {"server", "standalone"}
REQUIRED_SECRETS = ["WEBHOOK_SECRET", "ADMIN_TOKEN"]


def help_env_vars(binary, command):
    """The environment variables `webhooks COMMAND --help` documents."""
    out = subprocess.run([binary, command, "--help"], capture_output=True, text=True, check=True).stdout
    return set(re.findall(r"\[env: ([A-Z0-9_]+)[=\]]", out))


def env_names(environment):
    if isinstance(environment, dict):
        return list(environment)
    return [item.split("=", 1)[0] for item in environment or []]


def env_value(environment, name):
    if isinstance(environment, dict):
        return environment.get(name)
    for item in environment or []:
        key, _, value = item.partition("=")
        if key == name:
            return value
    return None


def secret_problems(name, svc):
    """Why this service could start with its API open, if it could."""
    problems = []
    env = svc.get("environment")
    for var in REQUIRED_SECRETS:
        value = env_value(env, var)
        if not re.fullmatch(r"\$\{" + var + r":\?[^}]+\}", str(value or "")):
            problems.append(f"{name}: {var} must be required with a message, as ${{{var}:?...}} (it is {value!r})")
    if env_value(env, "INSECURE") is not None:
        problems.append(f"{name}: sets INSECURE, which would start its API open")
    return problems


def keys(value):
    return list(value) if isinstance(value, (dict, list)) else []


def check(compose, schema, env_for):
    """All problems found; `env_for(command)` gives the variables our binary reads for it."""
    errors = [
        f"schema: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose)
    ]
    services = compose.get("services") or {}
    volumes = compose.get("volumes") or {}
    networks = compose.get("networks") or {}
    for name, svc in services.items():
        for dep in keys(svc.get("depends_on")) + [link.split(":")[0] for link in svc.get("links", [])]:
            if dep not in services:
                errors.append(f"{name}: refers to service '{dep}', which is not defined")
        extends = (svc.get("extends") or {}).get("service")
        if extends and extends not in services:
            errors.append(f"{name}: extends service '{extends}', which is not defined")
        for vol in svc.get("volumes", []):
            source = vol.get("source", "") if isinstance(vol, dict) else vol.split(":")[0] if ":" in vol else ""
            if source and not source.startswith((".", "/", "~", "$")) and source not in volumes:
                errors.append(f"{name}: named volume '{source}' is not defined under volumes")
        for net in keys(svc.get("networks")):
            if net not in networks and net != "default":
                errors.append(f"{name}: network '{net}' is not defined under networks")
        if "build" in svc:
            command = (svc.get("command") or ["standalone"])[0]
            known = env_for(command) | READ_WITHOUT_FLAG
            for var in env_names(svc.get("environment")):
                if var not in known:
                    errors.append(f"{name}: {var} is not read by `webhooks {command}` (see its --help)")
            if command in SERVING:
                errors.extend(secret_problems(name, svc))
    return errors


def self_test(compose, schema, env_for):
    """Each planted fault must be reported: a check that cannot fail checks nothing."""
    ours = next(n for n, s in compose["services"].items() if "build" in s and (s.get("command") or ["standalone"])[0] in SERVING)
    faults = {
        "schema": lambda c: c["services"][ours].update(restart=42),
        "missing service": lambda c: c["services"][ours].update(depends_on=["no-such-service"]),
        "missing volume": lambda c: c["services"][ours].update(volumes=["no-such-volume:/data"]),
        "misspelt variable": lambda c: c["services"][ours]["environment"].update(KAFKA_BROKER="x:9092"),
        "optional admin token": lambda c: c["services"][ours]["environment"].update(ADMIN_TOKEN="${ADMIN_TOKEN:-}"),
        "webhook secret not given": lambda c: c["services"][ours]["environment"].pop("WEBHOOK_SECRET"),
        "insecure": lambda c: c["services"][ours]["environment"].update(INSECURE="true"),
    }
    failed = []
    for what, plant in faults.items():
        broken = copy.deepcopy(compose)
        plant(broken)
        if not check(broken, schema, env_for):
            failed.append(what)
    if failed:
        sys.exit(f"check_compose self-test: not caught: {', '.join(failed)}")
    print(f"check_compose self-test: all {len(faults)} planted faults caught")


def main(argv):
    testing = argv[:1] == ["--self-test"]
    args = argv[1:] if testing else argv
    if not args:
        sys.exit(__doc__)
    binary = args[0]
    path = Path(args[1]) if len(args) > 1 else ROOT / "docker-compose.yml"
    compose = yaml.safe_load(path.read_text())
    schema = json.loads(SCHEMA.read_text())
    cache = {}

    def env_for(command):
        if command not in cache:
            cache[command] = help_env_vars(binary, command)
        return cache[command]

    if testing:
        self_test(compose, schema, env_for)
        return
    errors = check(compose, schema, env_for)
    for e in errors:
        print(f"{path.name}: {e}", file=sys.stderr)
    if errors:
        sys.exit(1)
    print(f"{path.name}: valid against the Compose Specification; {len(compose['services'])} services, references and variables check")


if __name__ == "__main__":
    main(sys.argv[1:])
