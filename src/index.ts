/**
 * Flotilla as a library, typed: the gateway over a fleet, the fleet file,
 * the simulator (the fleet's twin) and the hardware model. The CLI
 * (`bin/flotilla.js`) is built on the same parts. examples/library.mjs runs
 * each of them.
 */
export { createGateway, createGatewayWithShutdown, type Gateway, type GatewayOptions } from "./gateway/server.js";
export { Membership, type ReloadSummary } from "./gateway/membership.js";
export { Discovery, type DiscoveryOptions } from "./gateway/discovery/index.js";
export { loadFleet, readFleetFile } from "./fleet/load.js";
export { buildFleet } from "./fleet/build.js";
export { ConfigError, parseFleetConfig, type FleetConfig, type ModelConfig, type ReplicaConfig } from "./fleet/config.js";
export { Fleet, type Replica, type ServedModel } from "./fleet/fleet.js";
export { simulate, STATUS, type SimulateOptions, type SimResult } from "./sim/simulator.js";
export { parseSimFleetYaml, resolveSimFleet, type SimFleet } from "./sim/fleet-file.js";
export { loadTrace, scaleRate, type Trace } from "./sim/traces.js";
export { syntheticTrace, type SyntheticOptions } from "./sim/synthetic.js";
export { buildReport, type SimReport } from "./sim/report.js";
export { estimate, type Estimate, type EstimateInput } from "./hardware/estimate.js";
export { catalog, type Catalog } from "./hardware/catalog.js";
export { policies, policyByName, type Policy } from "./scheduler/index.js";
export { wallClock, ManualClock, type Clock } from "./core/clock.js";
/** The built-in tiny model (random weights: gibberish by design), written on first use under $FLOTILLA_HOME. */
export { ensureDefaultModel as builtInModel } from "./gguf/default-model.js";
