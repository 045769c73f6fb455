#!/usr/bin/env python3
"""The metric names a Grafana dashboard queries, against what the services expose. Python's
standard library only; checks/dashboard-check.sh feeds it live /metrics.

    checks/dashboard.py check DASHBOARD.json EXPOSITION...   exit 1 and list, one line, every name
                                                          the dashboard queries that no
                                                          exposition offers
    checks/dashboard.py names DASHBOARD.json                 the names it queries, one a line
    checks/dashboard.py evaluate DASHBOARD.json URL EXPOSITION...
                                                          every panel query in the Prometheus at
                                                          URL: valid PromQL, and data for each
                                                          query whose metrics are all exposed
    checks/dashboard.py selftest                             the extraction and matching rules

A name is offered when an exposition has a sample of that name, or a `# TYPE` line whose family
has it as a series: a counter `x` offers `x_total` (and `x_created`), a histogram `x` offers
`x_bucket`, `x_sum`, `x_count`, a summary `x` offers `x`, `x_sum`, `x_count`, a gauge `x` offers
`x`. So a family with no sample yet (a labelled counter nobody incremented) still counts, and a
histogram's series map to their family. A missing `x_bucket`, `x_sum` or `x_count` is reported
as its family `x`.
"""

import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from selftest import expect

SERIES_OF = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count", "_created"),
    "gauge": ("",),
    "unknown": ("",),
    "info": ("_info",),
    "stateset": ("",),
}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset", "inf", "nan"}
IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
NUMBER = re.compile(r"(?:0x[0-9a-fA-F]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)")


def metric_names(expr):
    """Metric names in one PromQL expression (Grafana variables allowed)."""
    text = re.sub(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*", " ", expr)  # $__rate_interval, ${x}, $x
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', " ", text)  # strings
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    names, i = set(), 0
    while i < len(text):
        number = NUMBER.match(text, i)
        if number and number.end() > i and not IDENT.match(text, i):
            i = number.end()
            continue
        ident = IDENT.match(text, i)
        if not ident:
            i += 1
            continue
        word, i = ident.group(), ident.end()
        rest = text[i:].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue  # a function, an aggregation or a keyword
        names.add(word)
    return names


def dashboard_queries(dashboard):
    """Every PromQL text of the dashboard: panel targets (rows' nested panels too) and the query
    variables (label_values(metric, label) and query_result(expr))."""
    queries = []

    def walk(panels):
        for p in panels:
            queries.extend(t["expr"] for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        q = var.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.match(r"\s*label_values\(\s*(.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*$", q)
        if m:
            queries.append(m.group(1))
        elif (m := re.match(r"\s*(?:query_result|metrics)\((.*)\)\s*$", q)):
            queries.append(m.group(1))
    return queries


def offered(exposition):
    """Every series name an exposition offers (see the module doc)."""
    names = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                family, kind = parts[2], parts[3]
                names.update(family + suffix for suffix in SERIES_OF.get(kind, ("",)))
        elif line and not line.startswith("#"):
            m = IDENT.match(line)
            if m:
                names.add(m.group())
    return names


def missing(queried, available):
    """The queried names not available, histogram series as their family, sorted."""
    out = set()
    for name in queried - available:
        family = next((name[: -len(s)] for s in HISTOGRAM_SUFFIXES if name.endswith(s)), None)
        out.add(family if family and family != "" else name)
    return sorted(out)


def queried_names(dashboard):
    names = set()
    for q in dashboard_queries(dashboard):
        names |= metric_names(q)
    return names


def panel_queries(dashboard):
    """(panel title, expr) of every panel target, rows' nested panels too."""
    out = []

    def walk(panels):
        for p in panels:
            out.extend((p.get("title", "?"), t["expr"]) for t in p.get("targets", []) if t.get("expr"))
            walk(p.get("panels", []))

    walk(dashboard.get("panels", []))
    return out


def evaluate(dashboard, url, available, deadline_s=45):
    """Runs every panel query in Prometheus, Grafana's variables set as Grafana would for a 1 s
    scrape interval ($__rate_interval: 4 scrapes) and the `All` namespace. Polls until every query
    whose metric names are all exposed returns data, or the deadline. Returns the problems."""
    pending = []
    for title, expr in panel_queries(dashboard):
        promql = expr.replace("$__rate_interval", "4s").replace("$namespace", ".*")
        pending.append((title, promql, not (metric_names(expr) - available)))
    end = time.monotonic() + deadline_s
    while True:
        problems, waiting = [], []
        for title, promql, expect_data in pending:
            query = urllib.parse.urlencode({"query": promql})
            try:
                with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=5) as r:
                    answer = json.load(r)
            except urllib.error.HTTPError as e:  # 400: the query does not parse
                answer = json.load(e)
            if answer.get("status") != "success":
                problems.append(f"{title}: {promql}: {answer.get('error', answer)}")
            elif expect_data and not answer["data"]["result"]:
                waiting.append(f"{title}: {promql}: no data although its metrics are exposed")
        if problems or not waiting or time.monotonic() > end:
            return problems + waiting
        time.sleep(1)


# --- self-test ----------------------------------------------------------------------------------

EXPOSITION = """\
# HELP http_requests HTTP requests answered.
# TYPE http_requests counter
# HELP pingpong_increments Increments.
# TYPE pingpong_increments counter
pingpong_increments_total 3
# TYPE pingpong_batch_size histogram
pingpong_batch_size_sum 3.0
pingpong_batch_size_count 3
pingpong_batch_size_bucket{le="1.0"} 3
# TYPE http_connections_open gauge
http_connections_open 1
# EOF
"""


def selftest():
    cases = [
        ("aggregation, matchers with a Grafana variable and a string holding a brace",
         metric_names('sum by (route, status) (rate(http_requests_total{namespace=~"$namespace", route!="/}"}[$__rate_interval]))'),
         {"http_requests_total"}),
        ("histogram_quantile over a bucket series, trailing by",
         metric_names("histogram_quantile(0.99, sum(rate(pingpong_durable_write_seconds_bucket[5m])) by (le))"),
         {"pingpong_durable_write_seconds_bucket"}),
        ("a ratio of _sum and _count, a number with an exponent",
         metric_names("sum(rate(a_sum[1m])) / sum(rate(a_count[1m])) * 1e3"),
         {"a_sum", "a_count"}),
        ("offset, a set operator with on(), bool",
         metric_names("x offset 5m and on (instance) y > bool 0"),
         {"x", "y"}),
        ("a query variable: the metric of label_values, not the label",
         queried_names({"templating": {"list": [{"type": "query", "query": {"query": "label_values(pingpong_increments_total, namespace)"}}]}}),
         {"pingpong_increments_total"}),
        ("nested row panels",
         queried_names({"panels": [{"type": "row", "panels": [{"targets": [{"expr": "up"}]}]}]}),
         {"up"}),
        ("a counter's family offers _total even with no sample; a histogram its three series",
         {"http_requests_total", "pingpong_batch_size_bucket", "pingpong_batch_size_count", "http_connections_open"} - offered(EXPOSITION),
         set()),
        ("missing names, a histogram's series as its family, a counter's family name is no series",
         missing({"pingpong_increments_total", "pingpong_increments_bucket", "http_requests", "log_lines_dropped_total",
                  "gone_seconds_bucket", "gone_seconds_sum", "pingpong_batch_size_sum"}, offered(EXPOSITION)),
         ["gone_seconds", "http_requests", "log_lines_dropped_total", "pingpong_increments"]),
    ]
    return expect(cases)


def main(argv):
    if argv[1:2] == ["selftest"]:
        return 1 if selftest() else 0
    if len(argv) == 3 and argv[1] == "names":
        print("\n".join(sorted(queried_names(json.load(open(argv[2]))))))
        return 0
    if len(argv) >= 5 and argv[1] == "evaluate":
        dashboard = json.load(open(argv[2]))
        available = set()
        for path in argv[4:]:
            available |= offered(open(path).read())
        problems = evaluate(dashboard, argv[3], available)
        for problem in problems:
            print(problem)
        if problems:
            return 1
        queries = panel_queries(dashboard)
        empty = sorted({t for t, e in queries if metric_names(e) - available})
        print(f"all {len(queries)} panel queries are valid PromQL and every one whose metrics are exposed has data"
              + (f"; no data yet (metrics not exposed): {', '.join(empty)}" if empty else ""))
        return 0
    if len(argv) >= 4 and argv[1] == "check":
        queried = queried_names(json.load(open(argv[2])))
        available = set()
        for path in argv[3:]:
            available |= offered(open(path).read())
        lost = missing(queried, available)
        if lost:
            print(f"{argv[2]} queries {len(lost)} metric(s) no service exposes: {' '.join(lost)}")
            return 1
        print(f"{argv[2]}: all {len(queried)} metric names it queries are exposed")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
