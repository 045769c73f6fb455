// Validates PodMonitors against the Prometheus Operator's schema for monitoring.coreos.com/v1
// (@kubernetes-models/prometheus-operator: JSON-schema validators generated from the operator's
// Go API, pinned in package-lock.json). Reads the JSON objects `kubectl ... -o json` prints on
// stdin (one after the other, or a List); prints one line per problem, `ok KIND/NAME` per valid
// object; exits 1 on any problem. Called by .ci/dist-check.sh after `npm ci` here.
import { readFileSync } from "node:fs";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";

function objects(text) {
  const out = [];
  let depth = 0, start = -1, inString = false, escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === "\\") escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === "{") { if (depth++ === 0) start = i; }
    else if (c === "}" && --depth === 0) {
      const obj = JSON.parse(text.slice(start, i + 1));
      out.push(...(obj.kind === "List" ? obj.items : [obj]));
    }
  }
  return out;
}

let problems = 0;
const all = objects(readFileSync(0, "utf8"));
if (all.length === 0) {
  console.log("no object on stdin");
  problems++;
}
for (const obj of all) {
  const name = `${obj.kind}/${obj.metadata?.name}`;
  if (obj.apiVersion !== "monitoring.coreos.com/v1" || obj.kind !== "PodMonitor") {
    console.log(`${name}: ${obj.apiVersion} ${obj.kind} is not a monitoring.coreos.com/v1 PodMonitor`);
    problems++;
    continue;
  }
  try {
    new PodMonitor(obj).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    for (const err of e.errors ?? [{ instancePath: "", message: e.message }]) {
      console.log(`${name}: ${err.instancePath || "/"} ${err.message}`);
      problems++;
    }
  }
}
process.exit(problems ? 1 : 0);
