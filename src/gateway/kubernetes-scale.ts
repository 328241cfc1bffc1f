/**
 * The autoscaler's Kubernetes actuator: sets a Deployment's or
 * StatefulSet's replicas through its scale subresource (autoscaling/v1
 * Scale), with the official client. It reads the Scale and writes it back with
 * the count changed and the resourceVersion it read, so a change someone
 * else made in between is not overwritten blindly: the API server answers
 * 409 Conflict, and it reads again (twice at most, then the change fails
 * and the autoscaler hands the count over again at its next decision).
 * The new pods reach the gateway the way they always do: EndpointSlice
 * discovery, typically.
 */
import { AppsV1Api, type V1Scale } from "@kubernetes/client-node";
import type { AutoscaleConfig } from "../fleet/config.js";
import type { Actuator } from "./autoscaling.js";
import { loadKubeConfig, namespaceOf, reasonOf, statusOf } from "./kube-client.js";

type Section = NonNullable<AutoscaleConfig["kubernetes"]>;
const ATTEMPTS = 3;

export function kubernetesScaleActuator(section: Section, opts: { readonly baseDir: string; readonly env: NodeJS.ProcessEnv; readonly where: string }): Actuator {
  const kc = loadKubeConfig(section.kubeconfig, opts);
  const api = kc.makeApiClient(AppsV1Api);
  const target = { name: section.name, namespace: namespaceOf(kc, section.namespace) };
  const [read, replace] =
    section.kind === "StatefulSet"
      ? [() => api.readNamespacedStatefulSetScale(target), (body: V1Scale) => api.replaceNamespacedStatefulSetScale({ ...target, body, fieldManager: "flotilla" })]
      : [() => api.readNamespacedDeploymentScale(target), (body: V1Scale) => api.replaceNamespacedDeploymentScale({ ...target, body, fieldManager: "flotilla" })];
  const what = `${section.kind} ${target.namespace}/${target.name}`;
  return async ({ desired }) => {
    for (let attempt = 1; ; attempt++) {
      const scale = await read().catch((err: unknown) => {
        throw new Error(`reading the scale of ${what} failed: ${reasonOf(err)}`);
      });
      if (scale.spec?.replicas === desired) return;
      try {
        await replace({ ...scale, spec: { ...scale.spec, replicas: desired } });
        return;
      } catch (err) {
        // 409: changed since it was read; read it again.
        if (statusOf(err) === 409 && attempt < ATTEMPTS) continue;
        throw new Error(`setting ${what} to ${desired} replicas failed: ${reasonOf(err)}`);
      }
    }
  };
}
