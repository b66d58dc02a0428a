// Validates Kubernetes objects against the API's OpenAPI schemas, as the npm packages
// kubernetes-models (core and apps APIs), @kubernetes-models/prometheus-operator (ServiceMonitor),
// @kubernetes-models/keda (ScaledObject) and @kubernetes-models/cert-manager (Certificate,
// Issuer) ship them (ajv underneath). Reads a JSON array of objects on stdin; prints one line per object; exits 1 if any is invalid or of an unknown kind.
//   node tools/npm/validate_k8s.mjs < objects.json
import * as apps from "kubernetes-models/apps/v1";
import * as autoscaling from "kubernetes-models/autoscaling/v2";
import * as batch from "kubernetes-models/batch/v1";
import * as core from "kubernetes-models/v1";
import * as networking from "kubernetes-models/networking.k8s.io/v1";
import * as policy from "kubernetes-models/policy/v1";
import * as certManager from "@kubernetes-models/cert-manager/cert-manager.io/v1";
import * as keda from "@kubernetes-models/keda/keda.sh/v1alpha1";
import * as monitoring from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const modules = {
  "apps/v1": apps,
  "autoscaling/v2": autoscaling,
  "batch/v1": batch,
  "v1": core,
  "networking.k8s.io/v1": networking,
  "policy/v1": policy,
  "cert-manager.io/v1": certManager,
  "keda.sh/v1alpha1": keda,
  "monitoring.coreos.com/v1": monitoring,
};

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const objects = JSON.parse(Buffer.concat(chunks).toString("utf8"));
let failures = 0;
for (const object of objects) {
  const name = `${object.apiVersion} ${object.kind} ${object.metadata?.name}`;
  const Model = modules[object.apiVersion]?.[object.kind];
  if (Model === undefined) {
    console.log(`FAIL ${name}: no schema for this apiVersion and kind`);
    ++failures;
    continue;
  }
  try {
    new Model(object).validate();
    console.log(`ok ${name}`);
  } catch (error) {
    console.log(`FAIL ${name}: ${error.message}`);
    ++failures;
  }
}
process.exit(failures > 0 ? 1 : 0);
