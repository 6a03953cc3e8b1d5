"""Supply-chain checks run by .ci/run: ``pip-audit`` over the installed dependencies, ``bandit`` over src/.

pip-audit asks PyPI's advisory data about every installed distribution. A machine that cannot reach it
(offline, or a registry mirror without the per-version JSON that pip-audit queries) makes pip-audit skip
each dependency and still print "No known vulnerabilities found"; this script counts the skipped ones
and says plainly that the audit did not happen instead of passing silently. Known vulnerabilities fail
the check. bandit fails on any finding that is not silenced with a justified ``# nosec`` comment.
"""

from __future__ import annotations

import json
import subprocess
import sys


def pip_audit() -> int:
    command = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off", "--skip-editable"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        dependencies = json.loads(done.stdout)["dependencies"]
    except (json.JSONDecodeError, KeyError):
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"CI: pip-audit could not run ({reason}); the dependency audit was SKIPPED", file=sys.stderr)
        return 0
    vulnerable = [d for d in dependencies if d.get("vulns")]
    for dep in vulnerable:
        for vuln in dep["vulns"]:
            fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version"
            print(f"CI: {dep['name']} {dep['version']}: {vuln['id']} (fixed in {fixed})", file=sys.stderr)
    skipped = [d for d in dependencies if "skip_reason" in d]
    audited = len(dependencies) - len(skipped)
    if skipped:
        print(
            f"CI: pip-audit could look up only {audited} of {len(dependencies)} dependencies; {len(skipped)} were "
            f"skipped (e.g. {skipped[0]['skip_reason']}): the vulnerability service is not reachable from here, "
            "so the dependency audit is INCOMPLETE",
            file=sys.stderr,
        )
    if vulnerable:
        return 1
    if not skipped:
        print(f"CI: pip-audit: no known vulnerabilities in the {audited} installed dependencies")
    return 0


def bandit() -> int:
    done = subprocess.run([sys.executable, "-m", "bandit", "-q", "-r", "src"], check=False)
    if done.returncode == 0:
        print("CI: bandit: no findings in src/ (silenced ones carry a justification beside their # nosec)")
    return done.returncode


if __name__ == "__main__":
    sys.exit(max(pip_audit(), bandit()))
