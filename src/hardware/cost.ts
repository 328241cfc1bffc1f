/**
 * Money: device time (rented, or purchase price amortised over a service
 * life) plus the electricity the facility draws for it.
 */
import type { HardwareSpec } from "./accelerators.js";

export type Pricing = "rent" | "purchase";

export interface CostOptions {
  readonly pricing?: Pricing;
  /** Service life over which a purchase is written off (assumption: 4 years, always busy). */
  readonly amortizationYears?: number;
  /** Electricity price (assumption: 0.10 USD/kWh, US industrial order of magnitude). */
  readonly usdPerKwh?: number;
}

export const DEFAULT_AMORTIZATION_YEARS = 4;
export const DEFAULT_USD_PER_KWH = 0.1;
const HOURS_PER_YEAR = 24 * 365;

/**
 * Device cost per hour. Purchase pricing falls back to rent where the device is
 * not sold (TPUs).
 */
export function deviceUsdPerHour(hw: HardwareSpec, opts: CostOptions = {}): number {
  if (opts.pricing === "purchase" && hw.price.purchaseUsd !== undefined) {
    return hw.price.purchaseUsd / ((opts.amortizationYears ?? DEFAULT_AMORTIZATION_YEARS) * HOURS_PER_YEAR);
  }
  return hw.price.rentUsdPerHour;
}

export interface TokenCost {
  readonly usdPerMTok: number;
  readonly deviceUsdPerMTok: number;
  readonly energyUsdPerMTok: number;
}

/**
 * $/Mtok = (devices x device $/h + facility kW x $/kWh) / tokens per hour x 1e6.
 * `facilityWatts` is the whole replica's draw including PUE.
 */
export function usdPerMTok(hw: HardwareSpec, devices: number, tokensPerS: number, facilityWatts: number, opts: CostOptions = {}): TokenCost {
  if (tokensPerS <= 0) return { usdPerMTok: Infinity, deviceUsdPerMTok: Infinity, energyUsdPerMTok: Infinity };
  const tokensPerHour = tokensPerS * 3600;
  const device = (devices * deviceUsdPerHour(hw, opts) * 1e6) / tokensPerHour;
  const energy = ((facilityWatts / 1000) * (opts.usdPerKwh ?? DEFAULT_USD_PER_KWH) * 1e6) / tokensPerHour;
  return { usdPerMTok: device + energy, deviceUsdPerMTok: device, energyUsdPerMTok: energy };
}

export interface UsageProfile {
  readonly requestsPerDay: number;
  /** Defaults to the estimate's input and output lengths. */
  readonly inputTokens?: number;
  readonly outputTokens?: number;
  /** Days in a month (default 30). */
  readonly days?: number;
}

export interface UserMonthCost {
  readonly requestsPerMonth: number;
  readonly outputTokensPerMonth: number;
  readonly usd: number;
  readonly joules: number;
}

/**
 * Cost of one user's month: their requests take their share of a replica that
 * serves `requestsPerS` such requests at full load.
 */
export function userMonthCost(
  usage: UsageProfile,
  outputTokens: number,
  replicaUsdPerHour: number,
  replicaFacilityWatts: number,
  requestsPerS: number,
  usdPerKwh: number = DEFAULT_USD_PER_KWH,
): UserMonthCost {
  const requests = usage.requestsPerDay * (usage.days ?? 30);
  if (requestsPerS <= 0) return { requestsPerMonth: requests, outputTokensPerMonth: requests * outputTokens, usd: Infinity, joules: Infinity };
  const secondsPerRequest = 1 / requestsPerS;
  const joules = requests * secondsPerRequest * replicaFacilityWatts;
  const usd = requests * secondsPerRequest * (replicaUsdPerHour / 3600) + (joules / 3.6e6) * usdPerKwh;
  return { requestsPerMonth: requests, outputTokensPerMonth: requests * outputTokens, usd, joules };
}
