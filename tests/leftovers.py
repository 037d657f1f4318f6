"""What of the embedded cluster still exists on the machine: network
namespaces, links, nft tables, our processes (by executable, under the build
directory) and the state directory. Shared by tests/e2e and tests/k8s, which
assert it is empty after every `cluster down`."""

import os
import subprocess
from pathlib import Path

RUN_DIR = Path("/run/mycedrive")
OUR_PROGRAMS = ("myce-node", "myce-agent", "myce-podinit", "myce-coordinator", "myce-coordinator-k8s", "myce-link",
                "myce-proxy")


def leftovers(build):
    found = []
    ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {l.split()[0]}" for l in ns.splitlines() if l.startswith("myce-")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    found += [f"link {l.split(':')[1].strip()}" for l in links.splitlines()
              if l.split(":")[1].strip().split("@")[0].startswith(("myce", "mycp"))]
    nft = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    found += [f"nft {l}" for l in nft.splitlines() if "mycedrive" in l or "myce-" in l]
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            exe = os.readlink(f"/proc/{pid}/exe").replace(" (deleted)", "")
        except OSError:
            continue
        if exe.startswith(str(build) + "/") and os.path.basename(exe) in OUR_PROGRAMS:
            found.append(f"process {pid} {exe}")
    if RUN_DIR.exists():
        found.append(f"dir {RUN_DIR}")
    return found
