"""How the Python checks prove their own rules: each runs `CHECK.py selftest`, a list of cases
with the answer each must give, and reports them here, one line a case, as the shell checks do
(`  ok     ...` / `  FAILED ...`). The checks run as `python3 checks/<check>.py`, so this file is
on their path as `selftest`.
"""


def report(outcomes):
    """OUTCOMES: (passed, line) pairs. Prints each line as ok or FAILED; returns the failures."""
    failed = 0
    for passed, line in outcomes:
        if passed:
            print(f"  ok     selftest: {line}")
        else:
            failed += 1
            print(f"  FAILED selftest: {line}")
    return failed


def expect(cases):
    """CASES: (what, got, want) triples, each passing when got == want."""
    return report((got == want, what if got == want else f"{what}: got {got}, expected {want}")
                  for what, got, want in cases)


def refuse(cases):
    """CASES: (what, problems, should_fail) triples, each passing when the check found problems
    exactly when it should have."""
    return report((bool(problems) == should_fail,
                   f"{what}{' is refused: ' + problems[0] if problems else ''}"
                   if bool(problems) == should_fail else f"{what}: {problems or 'accepted'}")
                  for what, problems, should_fail in cases)

