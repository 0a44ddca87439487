#!/usr/bin/env python3
"""XEP-0227 user import: stanzad against ejabberd 23.01 and Prosody 0.12 (Debian 12), on the
same file of N users with SCRAM-SHA-1 and -256 credentials (import_bench.write_users: random
salts and keys, so nobody hashes a password and nobody logs in).

    sudo STANZAD_BIN_DIR=build/cmd /usr/bin/python3 bench/import_compare.py
        [--users 10000,100000] [--servers stanzad,ejabberd,prosody] [--timeout_s 1200]

For each N the file is written once, then each server in turn, each fresh:
- stanzad: one node (not a cluster), `stanzactl user import FILE`, timed from stanzactl's
  start to its exit; then `status` must count N users.
- ejabberd: a node of its own (bench/other_servers.sh start: 127.0.0.1 only, its own Mnesia
  spool, auth internal, no epmd), `ejabberdctl import_piefxis FILE`, timed from
  ejabberdctl's start to its exit; then `ejabberdctl registered_users` must list N.
- Prosody: its only XEP-0227 reader, the xep0227 storage driver of prosody-migrator, reads
  one file per user (DATA/USER@HOST.xml), not one file of N users. So the file is first
  split into N such files (by this script, timed apart), then `prosody-migrator` copies the
  accounts store from xep0227 to internal storage (DATA/HOST/accounts/USER.dat, as the
  Debian package's server reads it); then N account files must exist. The migrator reads the
  data directory compiled into it (/var/lib/prosody): it is run from a copy whose only change
  is that path.

An import that is still going after --timeout_s is stopped; the users it holds then and the
rate reached are printed instead. Each server's line gives seconds, users/s, its time as a
multiple of stanzad's in the same run, and the CPU time spent by the server and by the command
line tool (read from /proc and getrusage; on a shared machine, steadier than the seconds).
Needs root: the two others run as their Debian users (bench/other_servers.sh install sets them
up). Every process is the bench's own and is stopped by PID; IMPORT_COMPARE_KEEP=1 keeps the
work directory (logs, spools).
"""
import argparse
import json
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from import_bench import write_users  # noqa: E402
from stanzad_harness import DOMAIN, STANZACTL, StanzadProcess, free_port  # noqa: E402

OTHER_SERVERS = os.path.join(HERE, "other_servers.sh")
PROSODY_MIGRATOR = "/usr/bin/prosody-migrator"
PIE = "urn:xmpp:pie:0"
COMMAND_SECONDS_MAX = 120  # anything but the imports themselves
STOP_SECONDS_MAX = 5


def children_cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_seconds(pid):
    """User and system CPU time of a running process."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_bounded(command, timeout_s, **kwargs):
    """Runs command in a session of its own; on timeout kills that session's processes
    (the command and its children, e.g. ejabberdctl's erl). (exit code or None, seconds,
    CPU seconds of the command and its children)."""
    start, cpu_start = time.monotonic(), children_cpu_seconds()
    process = subprocess.Popen(command, start_new_session=True, **kwargs)
    try:
        code = process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        code = None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS_MAX)
    return code, time.monotonic() - start, children_cpu_seconds() - cpu_start


def tail(path, lines=20):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""


class Result:
    """One import: `cpu` says what it cost in CPU time and who spent it."""

    def __init__(self, server, users, seconds, finished, cpu, note=""):
        self.server, self.users, self.seconds = server, users, seconds
        self.finished, self.cpu, self.note = finished, cpu, note


def time_stanzad(users_path, count, timeout_s, work):
    node = StanzadProcess(ip="127.0.0.1", threads=1)
    try:
        node.start()
        log = os.path.join(work, "stanzactl.out")
        server_cpu = cpu_seconds(node.process.pid)
        with open(log, "w") as out:
            code, seconds, client_cpu = run_bounded(
                [STANZACTL, f"--state_dir={node.state_dir}", "user", "import", users_path],
                timeout_s, stdout=out, stderr=subprocess.STDOUT)
        server_cpu = cpu_seconds(node.process.pid) - server_cpu
        code_status, status, _ = node.stanzactl("status", json=True)
        held = json.loads(status)["users_configured"] if code_status == 0 else -1
        if code not in (0, None):
            raise RuntimeError(f"stanzactl user import: exit {code}: {tail(log)}")
        if code == 0 and held != count:
            raise RuntimeError(f"stanzad holds {held} users after importing {count}")
        return Result("stanzad", held, seconds, code == 0,
                      f"stanzad {server_cpu:.2f} + stanzactl {client_cpu:.2f}",
                      "user import, one node")
    finally:
        if os.environ.get("IMPORT_COMPARE_KEEP"):
            with open(os.path.join(work, "stanzad.log"), "w") as f:
                f.write(node.read_log())
        node.cleanup()


def ejabberdctl(instance, *args, timeout_s=COMMAND_SECONDS_MAX, out=subprocess.PIPE):
    """ejabberdctl for the instance bench/other_servers.sh started in `instance`."""
    return run_bounded([OTHER_SERVERS, "__ejabberdctl", instance] + list(args), timeout_s,
                       stdout=out, stderr=subprocess.STDOUT, cwd=spool(instance))


def spool(instance):
    return os.path.join(instance, "ejabberd", "db")


def ejabberd_users(instance):
    result = subprocess.run([OTHER_SERVERS, "__ejabberdctl", instance, "registered_users",
                             DOMAIN], capture_output=True, text=True, cwd=spool(instance),
                            timeout=COMMAND_SECONDS_MAX)
    if result.returncode != 0:
        raise RuntimeError(f"registered_users: exit {result.returncode}: {result.stdout}")
    return sum(1 for line in result.stdout.splitlines() if line.strip())


def time_ejabberd(users_path, count, timeout_s, work):
    instance = os.path.join(work, "ejabberd")
    os.mkdir(instance)
    started = subprocess.run([OTHER_SERVERS, "start", "ejabberd", instance, str(free_port()),
                              "1", "importCompare1"], capture_output=True, text=True,
                             timeout=COMMAND_SECONDS_MAX + 60)
    try:
        if started.returncode != 0:
            raise RuntimeError(f"ejabberd did not start: {started.stderr[-3000:]}")
        # What a command costs without work: an Erlang VM started for the client.
        _, client_seconds, _ = ejabberdctl(instance, "status", out=subprocess.DEVNULL)
        beam_pid = int(started.stdout.split()[-1])
        log = os.path.join(work, "import_piefxis.out")
        server_cpu = cpu_seconds(beam_pid)
        with open(log, "w") as out:
            code, seconds, client_cpu = ejabberdctl(instance, "import_piefxis", users_path,
                                                    timeout_s=timeout_s, out=out)
        server_cpu = cpu_seconds(beam_pid) - server_cpu
        if code not in (0, None):
            raise RuntimeError(f"import_piefxis: exit {code}: {tail(log)}")
        held = ejabberd_users(instance)  # while a stopped import's node still runs
        if code == 0 and held != count:
            raise RuntimeError(f"ejabberd holds {held} users after importing {count}: "
                               f"{tail(log)}")
        spool_mib = sum(os.path.getsize(os.path.join(spool(instance), name))
                        for name in os.listdir(spool(instance))) / (1 << 20)
        return Result("ejabberd", held, seconds, code == 0,
                      f"beam.smp {server_cpu:.2f} + ejabberdctl {client_cpu:.2f}",
                      f"import_piefxis; ejabberdctl alone {client_seconds:.2f} s; "
                      f"Mnesia spool {spool_mib:.0f} MiB")
    finally:
        subprocess.run([OTHER_SERVERS, "stop", "ejabberd", instance],
                       timeout=COMMAND_SECONDS_MAX + 60)


def split_users(users_path, data_dir):
    """One XEP-0227 document per user, named as Prosody's xep0227 storage reads them."""
    ElementTree.register_namespace("", PIE)
    count = 0
    for event, element in ElementTree.iterparse(users_path, events=("end",)):
        if element.tag != f"{{{PIE}}}user":
            continue
        name = element.get("name")
        server_data = ElementTree.Element(f"{{{PIE}}}server-data")
        host = ElementTree.SubElement(server_data, f"{{{PIE}}}host", jid=DOMAIN)
        host.append(element)
        with open(os.path.join(data_dir, f"{name}@{DOMAIN}.xml"), "wb") as f:
            f.write(ElementTree.tostring(server_data))
        element.clear()
        count += 1
    return count


def prosody_accounts(out_dir):
    accounts = os.path.join(out_dir, DOMAIN.replace(".", "%2e"), "accounts")
    return len(os.listdir(accounts)) if os.path.isdir(accounts) else 0


def time_prosody(users_path, count, timeout_s, work):
    instance = os.path.join(work, "prosody")
    data_dir, out_dir = os.path.join(instance, "data"), os.path.join(instance, "out")
    os.makedirs(data_dir)
    os.makedirs(out_dir)
    start = time.monotonic()
    split = split_users(users_path, data_dir)
    split_seconds = time.monotonic() - start
    if split != count:
        raise RuntimeError(f"{split} users split from a file of {count}")
    with open(PROSODY_MIGRATOR) as f:
        migrator = f.read()
    compiled_in = "CFG_DATADIR='/var/lib/prosody';"
    if compiled_in not in migrator:
        raise RuntimeError(f"{PROSODY_MIGRATOR} does not set {compiled_in}")
    migrator_copy = os.path.join(instance, "prosody-migrator")
    with open(migrator_copy, "w") as f:
        f.write(migrator.replace(compiled_in, f"CFG_DATADIR='{data_dir}';"))
    config = os.path.join(instance, "migrator.cfg.lua")
    with open(config, "w") as f:
        f.write(f'input {{\n\ttype = "xep0227";\n\thosts = {{ ["{DOMAIN}"] = {{ "accounts" }} }};'
                f'\n}}\noutput {{\n\ttype = "internal";\n\tpath = "{out_dir}";\n}}\n')
    prosody = pwd.getpwnam("prosody")
    for root, dirs, files in os.walk(instance):
        for name in [root] + [os.path.join(root, entry) for entry in dirs + files]:
            os.chown(name, prosody.pw_uid, prosody.pw_gid)
    log = os.path.join(work, "prosody-migrator.out")
    with open(log, "w") as out:
        code, seconds, cpu = run_bounded(
            ["setpriv", "--reuid=prosody", "--regid=prosody", "--init-groups", "--",
             "/usr/bin/lua5.4", migrator_copy, f"--config={config}", "input", "output"],
            timeout_s, stdout=out, stderr=subprocess.STDOUT, cwd=instance)
    held = prosody_accounts(out_dir)
    if code not in (0, None) or (code == 0 and "Done!" not in tail(log, 3)):
        raise RuntimeError(f"prosody-migrator: exit {code}: {tail(log)}")
    if code == 0 and held != count:
        raise RuntimeError(f"prosody-migrator wrote {held} accounts of {count}: {tail(log)}")
    return Result("prosody", held, seconds, code == 0, f"prosody-migrator {cpu:.2f}",
                  f"prosody-migrator xep0227 -> internal, accounts store; "
                  f"the split before it {split_seconds:.2f} s")


SERVERS = {"stanzad": time_stanzad, "ejabberd": time_ejabberd, "prosody": time_prosody}


def report(count, result, stanzad_seconds):
    rate = result.users / result.seconds if result.seconds > 0 else 0
    ratio = (f"{result.seconds / stanzad_seconds:6.1f}x stanzad's time"
             if stanzad_seconds and result.finished else "")
    if not result.finished:
        ratio = f"STOPPED at the timeout holding {result.users:,} of {count:,}"
    print(f"users={count:<7} {result.server:9s} {result.seconds:9.2f} s {rate:9,.0f} users/s  "
          f"{ratio}; CPU s: {result.cpu}  ({result.note})", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10000,100000", help="sizes, comma-separated")
    parser.add_argument("--servers", default="stanzad,ejabberd,prosody")
    parser.add_argument("--timeout_s", type=int, default=1200,
                        help="stop an import still going after this many seconds")
    args = parser.parse_args()
    sizes = [int(size) for size in args.users.split(",")]
    servers = args.servers.split(",")
    assert all(server in SERVERS for server in servers), f"servers: {', '.join(SERVERS)}"
    if os.geteuid() != 0 and servers != ["stanzad"]:
        sys.exit("ejabberd and Prosody run as their Debian users: run as root")
    for name, package in (("ejabberd", "/usr/sbin/ejabberdctl"),
                          ("prosody", PROSODY_MIGRATOR)):
        if name in servers and not os.path.exists(package):
            sys.exit(f"{package} is missing: run bench/other_servers.sh install")
    work = tempfile.mkdtemp(prefix="import_compare.")
    os.chmod(work, 0o755)  # the others' users read the file and own their directories
    try:
        for count in sizes:
            users_path = os.path.join(work, f"users{count}.xml")
            start = time.monotonic()
            write_users(users_path, count)
            os.chmod(users_path, 0o644)
            print(f"users={count:<7} file {os.path.getsize(users_path) >> 20} MiB written in "
                  f"{time.monotonic() - start:.1f} s", flush=True)
            stanzad_seconds = None
            for server in servers:
                run_dir = os.path.join(work, f"{server}{count}")
                os.mkdir(run_dir)
                os.chmod(run_dir, 0o755)
                result = SERVERS[server](users_path, count, args.timeout_s, run_dir)
                if server == "stanzad" and result.finished:
                    stanzad_seconds = result.seconds
                report(count, result, stanzad_seconds)
            os.remove(users_path)
    finally:
        if os.environ.get("IMPORT_COMPARE_KEEP"):
            print(f"kept {work}", flush=True)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
