/**
 * A tiny authoritative DNS server over UDP (RFC 1035 wire format), for the
 * DNS discovery tests: it answers A, AAAA and SRV questions from a mutable
 * table, so a test scales a "service" by editing the table. A name it does
 * not know is NXDOMAIN; a known name without records of the asked type is
 * an empty NOERROR answer (what resolvers call ENODATA). `mode` makes it
 * fail as real servers do: "servfail" answers SERVFAIL, "drop" never
 * answers (the resolver times out).
 */
import { createSocket, type Socket } from "node:dgram";
import type { AddressInfo } from "node:net";

export interface SrvTarget {
  readonly target: string;
  readonly port: number;
}

export interface DnsRecords {
  A?: string[];
  AAAA?: string[];
  SRV?: SrvTarget[];
}

const TYPES = { A: 1, AAAA: 28, SRV: 33 } as const;
type RecordType = keyof typeof TYPES;

export interface DnsServer {
  /** "127.0.0.1:<port>", for Resolver#setServers. */
  readonly address: string;
  /** The records by name (lower case); edit freely. */
  readonly records: Map<string, DnsRecords>;
  mode: "answer" | "servfail" | "drop";
  /** Questions received so far, of any name and type. */
  readonly queries: number;
  close(): Promise<void>;
}

export async function startDnsServer(records: Record<string, DnsRecords> = {}): Promise<DnsServer> {
  const table = new Map(Object.entries(records).map(([name, r]) => [name.toLowerCase(), r]));
  const socket: Socket = createSocket("udp4");
  const state = { mode: "answer" as DnsServer["mode"], queries: 0 };
  socket.on("message", (query, peer) => {
    state.queries++;
    if (state.mode === "drop") return;
    const reply = answer(query, table, state.mode === "servfail");
    if (reply !== undefined) socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const { port } = socket.address() as AddressInfo;
  return {
    address: `127.0.0.1:${port}`,
    records: table,
    get mode() {
      return state.mode;
    },
    set mode(m) {
      state.mode = m;
    },
    get queries() {
      return state.queries;
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}

/** The response to one query, or undefined for a packet that is not a query with one question. */
function answer(query: Buffer, table: Map<string, DnsRecords>, servfail: boolean): Buffer | undefined {
  if (query.length < 12 || (query.readUInt16BE(2) & 0x8000) !== 0 || query.readUInt16BE(4) !== 1) return undefined;
  const { name, end } = readName(query, 12);
  const qtype = query.readUInt16BE(end);
  const question = query.subarray(12, end + 4);
  const records = table.get(name.toLowerCase());
  const type = (Object.keys(TYPES) as RecordType[]).find((t) => TYPES[t] === qtype);
  const rdatas = records === undefined || type === undefined ? [] : rdataOf(type, records);
  // NXDOMAIN for an unknown name, SERVFAIL when told, else NOERROR (maybe with no answer: ENODATA).
  const rcode = servfail ? 2 : records === undefined ? 3 : 0;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  // QR, authoritative, recursion desired (as asked) and available.
  header.writeUInt16BE(0x8000 | 0x0400 | (query.readUInt16BE(2) & 0x0100) | 0x0080 | rcode, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(servfail ? 0 : rdatas.length, 6);
  const answers = servfail ? [] : rdatas.map((rdata) => resourceRecord(qtype, rdata));
  return Buffer.concat([header, question, ...answers]);
}

function rdataOf(type: RecordType, records: DnsRecords): Buffer[] {
  switch (type) {
    case "A":
      return (records.A ?? []).map((ip) => Buffer.from(ip.split(".").map(Number)));
    case "AAAA":
      return (records.AAAA ?? []).map(ipv6Bytes);
    case "SRV":
      return (records.SRV ?? []).map((s) => {
        const fixed = Buffer.alloc(6);
        fixed.writeUInt16BE(10, 0); // priority
        fixed.writeUInt16BE(10, 2); // weight
        fixed.writeUInt16BE(s.port, 4);
        return Buffer.concat([fixed, encodeName(s.target)]);
      });
  }
}

/** An answer whose name points back at the question's (offset 12), class IN, TTL 0 so nothing is cached. */
function resourceRecord(type: number, rdata: Buffer): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(0xc00c, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt32BE(0, 6);
  head.writeUInt16BE(rdata.length, 10);
  return Buffer.concat([head, rdata]);
}

function readName(buf: Buffer, at: number): { name: string; end: number } {
  const labels: string[] = [];
  let i = at;
  while (buf[i]! !== 0) {
    const len = buf[i]!;
    labels.push(buf.toString("latin1", i + 1, i + 1 + len));
    i += len + 1;
  }
  return { name: labels.join("."), end: i + 1 };
}

function encodeName(name: string): Buffer {
  const parts = name.split(".").filter((l) => l.length > 0);
  return Buffer.concat([...parts.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, "latin1")])), Buffer.from([0])]);
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
  const left = head === "" || head === undefined ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill("0"), ...right];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}
