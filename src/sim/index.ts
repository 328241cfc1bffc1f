/** sim/: the discrete-event digital twin of a fleet (see docs/sim.md). */
export { EventQueue } from "./events.js";
export { BlockLru, PrefixCache } from "./lru.js";
export { seededRandom, exponential, logNormal, gamma } from "./random.js";
export type { Random } from "./random.js";
export { ReplicaModel, SimSeq, passJoules } from "./replica.js";
export type { ReplicaParams, ReplicaListener, ReplicaCounters } from "./replica.js";
export {
  TraceError,
  parseMooncake,
  parseAzureCsv,
  parseAzureTimestamp,
  loadTrace,
  detectFormat,
  scaleRate,
  withDiurnalRate,
  truncateTrace,
  limitDuration,
  blockReuse,
  traceStats,
} from "./traces.js";
export type { Trace, TraceFormat, TraceTenants, DiurnalCurve } from "./traces.js";
export { syntheticTrace, withSyntheticPrefixes, DEFAULT_INPUT, DEFAULT_OUTPUT } from "./synthetic.js";
export type { SyntheticOptions, SyntheticTenant, PrefixOptions, LengthDist, ArrivalProcess } from "./synthetic.js";
export { FleetFileError, simFleetSchema, resolveSimFleet, parseSimFleetYaml, resolvePolicy } from "./fleet-file.js";
export type { SimFleet, SimIsland, SimFleetFile, ScheduledFailure } from "./fleet-file.js";
export { simulate, STATUS } from "./simulator.js";
export type { SimulateOptions, SimResult, SimProgress, SimReplicaResult, SimTimeline } from "./simulator.js";
export { buildReport, percentile, distribution, requestLatencies, requestsCsv, reportJson } from "./report.js";
export type { SimReport, Distribution, ReplicaReport } from "./report.js";
export { renderMarkdown, renderSummary } from "./markdown.js";
export { renderCharts, lineChart, barChart, histogram, stackedLineCharts, niceTicks, formatTick, ttftChart, timelineChart, replicasChart } from "./charts.js";
export { progressBar, renderBar } from "./progress.js";
