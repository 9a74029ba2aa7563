// deno-lint-ignore-file no-explicit-any -- stored objects and response bodies are whatever was written; this module checks their shape
/**
 * The independent checker of a randomized multi-process history (test/chaos): it reads
 * the rollout folder raw (node:fs + JSON.parse, never src/rollout), replays it itself,
 * and holds every recorded request, read and SSE event against it. It reports
 * violations (it never stops at the first one) and knows nothing of the service's code.
 *
 * The rollout it expects (API.md "Rollout layout", "Thread history, forks and deletion",
 * plus the stub design for deletes): per thread, `commits/{firstSeq, 12 digits}.json`
 * tiling seqs 1..head; a real commit `{"v":2,"firstSeq","lastSeq","at","fork"?,"patches"}`;
 * a delete commit holds exactly one `delete` patch (a tombstone) and the next life starts
 * after it; below a thread's latest tombstone every commit is a stub
 * `{"v":2,"firstSeq","lastSeq","tombstone":T}` (no user data). The older design removed
 * those commits instead: when the rollout holds no stub at all, seqs missing below a
 * thread's latest tombstone are taken for that older sweep and only noted.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";

// ---------------------------------------------------------------------------------------
// What the harness records (test/support/history.ts fills these in).

export type WriteKind =
  | "create"
  | "create-identity"
  | "create-repeat"
  | "update"
  | "merge"
  | "remove"
  | "delete-thread"
  | "fork";

export type RequestKind = WriteKind | "read";

/** ack: a 2xx; refused: a 4xx (nothing may be written); unknown: 5xx, network error or timeout (applied at most once). */
export type Outcome = "ack" | "refused" | "unknown";

export interface RequestRecord {
  /** Global order of sending (for messages only). */
  n: number;
  lane: number;
  /** The process incarnation the request went to, e.g. `p1#3`. */
  process: string;
  kind: RequestKind;
  thread: string;
  method: string;
  path: string;
  contentType?: string;
  body?: any;
  /**
   * The tag this request's patch carries (`payload.tag` of a create or plain update,
   * `payload.m` of a merge); a `create-repeat` carries the tag of the create it repeats.
   */
  tag?: string;
  /** update/merge/remove: the artifact it targets. */
  artifactId?: string;
  /** fork: the new thread. */
  target?: string;
  /** performance.now() when sent and when the answer (or the error) was in. */
  start: number;
  end: number;
  /** null: no HTTP answer (network error, timeout). */
  status: number | null;
  error?: string;
  response?: any;
  outcome: Outcome;
}

export interface SseEventRecord {
  /** The SSE `id:` (the last event id when dispatched). */
  id: string;
  event: string;
  data: string;
  /** Which connection of the reader delivered it, and from which process. */
  connection: number;
  process: string;
}

export interface ReaderRecord {
  name: string;
  thread: string;
  events: SseEventRecord[];
}

export interface Violation {
  check: string;
  thread?: string;
  message: string;
  details?: unknown;
}

// ---------------------------------------------------------------------------------------
// The rollout, read raw.

export interface RawPatch {
  seq: number;
  op: "add" | "update" | "remove" | "delete";
  at: string;
  artifact?: any;
}

export interface RealCommit {
  kind: "commit";
  key: number;
  firstSeq: number;
  lastSeq: number;
  at: string;
  fork?: { threadId: string; seq: number };
  patches: RawPatch[];
}

export interface StubFile {
  kind: "stub";
  key: number;
  firstSeq: number;
  lastSeq: number;
  tombstone: number;
}

export type CommitFile = RealCommit | StubFile;

export interface ThreadModel {
  id: string;
  /** Commit files by key (the number in their name), sorted. */
  files: CommitFile[];
  byKey: Map<number, CommitFile>;
  /** Every real patch by seq, with its commit. */
  patches: Map<number, { patch: RawPatch; commit: RealCommit }>;
  /** Every seq a stub covers. */
  stubbed: Map<number, StubFile>;
  /** Every seq known to be a tombstone: real delete patches and the tombstones stubs name. */
  tombstones: number[];
  /** The latest tombstone (0: never deleted). */
  latest: number;
  /** The last seq any commit file covers (0: none). */
  head: number;
  life: any;
  compaction: any;
  deltas: { name: string; firstSeq: number; lastSeq: number; json: any }[];
  snapshots: { name: string; seq: number; json: any }[];
  /** Raw text of every commit file, by name (to compare two reads of the folder). */
  texts: Map<string, string>;
}

export interface RolloutModel {
  threads: Map<string, ThreadModel>;
  /** Whether any thread holds a stub: then missing commits are never acceptable. */
  stubs: boolean;
  /** Problems found while reading (unparseable or malformed objects). */
  violations: Violation[];
}

const COMMIT_NAME = /^(\d{12})\.json$/;

function readJson(path: string): { json?: any; text?: string; error?: string } {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (error) {
    return { error: String(error) };
  }
  try {
    return { json: JSON.parse(text), text };
  } catch (error) {
    return { text, error: `not JSON: ${String(error)}` };
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}

const isSeq = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 1;

/** Reads every thread of `tenant` under `rolloutDir` (…/tenants/{tenant}/threads/*). */
export function readRolloutModel(rolloutDir: string, tenant = "local"): RolloutModel {
  const violations: Violation[] = [];
  const threads = new Map<string, ThreadModel>();
  const root = join(rolloutDir, "tenants", tenant, "threads");
  let stubs = false;
  for (const threadId of listDir(root)) {
    const dir = join(root, threadId);
    if (!statSync(dir).isDirectory()) continue;
    const model: ThreadModel = {
      id: threadId,
      files: [],
      byKey: new Map(),
      patches: new Map(),
      stubbed: new Map(),
      tombstones: [],
      latest: 0,
      head: 0,
      life: null,
      compaction: null,
      deltas: [],
      snapshots: [],
      texts: new Map(),
    };
    const bad = (message: string, details?: unknown) =>
      violations.push({ check: "1-format", thread: threadId, message, details });
    for (const name of listDir(join(dir, "commits"))) {
      const match = COMMIT_NAME.exec(name);
      if (!match) {
        bad(`unexpected file commits/${name}`);
        continue;
      }
      const key = Number(match[1]);
      const { json, text, error } = readJson(join(dir, "commits", name));
      if (text !== undefined) model.texts.set(name, text);
      if (error !== undefined || typeof json !== "object" || json === null) {
        bad(`commits/${name} does not parse: ${error ?? "not an object"}`);
        continue;
      }
      if (json.v !== 2 || !isSeq(json.firstSeq) || !isSeq(json.lastSeq)) {
        bad(`commits/${name} has no v:2, firstSeq, lastSeq`, json);
        continue;
      }
      if ("tombstone" in json) {
        stubs = true;
        const extra = Object.keys(json).filter((k) => !["v", "firstSeq", "lastSeq", "tombstone"].includes(k));
        if (!isSeq(json.tombstone)) bad(`stub commits/${name} has no valid tombstone`, json);
        else if (extra.length > 0) bad(`stub commits/${name} holds more than a stub: ${extra.join(", ")}`, json);
        model.files.push({
          kind: "stub",
          key,
          firstSeq: json.firstSeq,
          lastSeq: json.lastSeq,
          tombstone: json.tombstone,
        });
        continue;
      }
      if (!Array.isArray(json.patches) || json.patches.length === 0 || typeof json.at !== "string") {
        bad(`commits/${name} is neither a commit nor a stub`, json);
        continue;
      }
      model.files.push({
        kind: "commit",
        key,
        firstSeq: json.firstSeq,
        lastSeq: json.lastSeq,
        at: json.at,
        ...(json.fork !== undefined ? { fork: json.fork } : {}),
        patches: json.patches,
      });
    }
    model.files.sort((a, b) => a.key - b.key);
    for (const file of model.files) {
      model.byKey.set(file.key, file);
      if (file.kind === "stub") {
        for (let s = file.firstSeq; s <= file.lastSeq && s - file.firstSeq < 100_000; s++) model.stubbed.set(s, file);
        model.tombstones.push(file.tombstone);
        continue;
      }
      for (const patch of file.patches) {
        if (!isSeq(patch?.seq)) continue;
        if (model.patches.has(patch.seq)) continue; // overlaps are reported by the tiling check
        model.patches.set(patch.seq, { patch, commit: file });
        if (patch.op === "delete") model.tombstones.push(patch.seq);
      }
    }
    model.tombstones = [...new Set(model.tombstones)].sort((a, b) => a - b);
    model.latest = model.tombstones.at(-1) ?? 0;
    model.head = model.files.reduce((max, f) => Math.max(max, f.lastSeq), 0);
    const life = readJson(join(dir, "life.json"));
    if (life.json !== undefined) model.life = life.json;
    else if (existsSync(join(dir, "life.json"))) bad(`life.json does not parse: ${life.error}`);
    const compaction = readJson(join(dir, "compaction.json"));
    if (compaction.json !== undefined) model.compaction = compaction.json;
    for (const name of listDir(join(dir, "deltas"))) {
      const m = /^(\d{12})-(\d{12})\.json$/.exec(name);
      const { json } = readJson(join(dir, "deltas", name));
      if (!m || json === undefined) bad(`unexpected or unparseable deltas/${name}`);
      else model.deltas.push({ name, firstSeq: Number(m[1]), lastSeq: Number(m[2]), json });
    }
    for (const name of listDir(join(dir, "snapshots"))) {
      const m = COMMIT_NAME.exec(name);
      const { json } = readJson(join(dir, "snapshots", name));
      if (!m || json === undefined) bad(`unexpected or unparseable snapshots/${name}`);
      else model.snapshots.push({ name, seq: Number(m[1]), json });
    }
    threads.set(threadId, model);
  }
  return { threads, stubs, violations };
}

// ---------------------------------------------------------------------------------------
// The replay.

export interface ThreadView {
  id: string;
  createdAt: string;
  updatedAt: string;
  rolloutSeq: number;
  artifacts: any[];
  forkedFrom?: { threadId: string; seq: number };
}

/** Where seq `s` of a thread stands in the rollout. */
export type SeqPlace =
  | { kind: "real"; patch: RawPatch; commit: RealCommit }
  | { kind: "stub"; stub: StubFile }
  /** Missing below the latest tombstone while the rollout has no stubs (the older sweep). */
  | { kind: "swept" }
  | { kind: "missing" }
  | { kind: "beyond" };

export function placeOf(model: RolloutModel, thread: ThreadModel | undefined, seq: number): SeqPlace {
  if (!thread || seq > thread.head) return { kind: "beyond" };
  const real = thread.patches.get(seq);
  if (real) return { kind: "real", ...real };
  const stub = thread.stubbed.get(seq);
  if (stub) return { kind: "stub", stub };
  if (!model.stubs && seq < thread.latest) return { kind: "swept" };
  return { kind: "missing" };
}

/** The first seq of the life `seq` belongs to (the tombstone before it + 1). */
export function lifeStartOf(thread: ThreadModel, seq: number): number {
  let start = 1;
  for (const t of thread.tombstones) if (t < seq) start = t + 1;
  return start;
}

/**
 * The thread right after seq `n` replayed from its life's start: `null` when `n` is a
 * tombstone (the thread does not exist then), undefined when a seq of that life is not a
 * real patch (stubbed or missing: it cannot be replayed).
 */
export function replayAt(thread: ThreadModel, n: number): ThreadView | null | undefined {
  const at = thread.patches.get(n);
  if (at?.patch.op === "delete") return null;
  const start = lifeStartOf(thread, n);
  const artifacts = new Map<string, any>();
  let createdAt = "";
  let updatedAt = "";
  let forkedFrom: { threadId: string; seq: number } | undefined;
  for (let s = start; s <= n; s++) {
    const entry = thread.patches.get(s);
    if (!entry || entry.patch.op === "delete") return undefined;
    const { patch, commit } = entry;
    if (s === start) {
      createdAt = patch.at;
      if (commit.fork && commit.firstSeq === s) forkedFrom = commit.fork;
    }
    updatedAt = patch.at;
    if (patch.op === "remove") artifacts.delete(patch.artifact?.id);
    else artifacts.set(patch.artifact?.id, patch.artifact);
  }
  return {
    id: thread.id,
    createdAt,
    updatedAt,
    rolloutSeq: n,
    artifacts: [...artifacts.values()],
    ...(forkedFrom ? { forkedFrom } : {}),
  };
}

/** The tag of the request that produced a patch: `m` of a merge, else `tag` (undefined for fork copies and removes). */
export function producerTag(op: string, artifact: any): string | undefined {
  if (op !== "add" && op !== "update") return undefined;
  const payload = artifact?.payload;
  if (typeof payload !== "object" || payload === null || Array.isArray(payload)) return undefined;
  if (op === "update" && typeof payload.m === "string") return payload.m;
  return typeof payload.tag === "string" ? payload.tag : undefined;
}

// ---------------------------------------------------------------------------------------
// Checks 1 and 2: the rollout on its own.

function checkRollout(model: RolloutModel, out: Violation[]): { sweptSeqs: number } {
  let sweptSeqs = 0;
  for (const thread of model.threads.values()) {
    const v = (check: string, message: string, details?: unknown) =>
      out.push({ check, thread: thread.id, message, details });
    const latestAt = (() => {
      const t = thread.patches.get(thread.latest);
      return t?.patch.op === "delete" ? t.patch.at : undefined;
    })();

    // 1. Tiling 1..head.
    let expected = 1;
    for (const file of thread.files) {
      if (file.firstSeq !== file.key) v("1-tiling", `commit ${file.key} says firstSeq ${file.firstSeq}`, file);
      if (file.lastSeq < file.firstSeq) v("1-tiling", `commit ${file.key} has lastSeq ${file.lastSeq} < firstSeq`);
      if (file.key > expected) {
        const hole = [expected, file.key - 1];
        if (!model.stubs && file.key - 1 < thread.latest) sweptSeqs += file.key - expected;
        else {
          v("1-hole", `seqs ${hole[0]}..${hole[1]} have no commit file (next file ${file.key})`, {
            latestTombstone: thread.latest,
            stubsInRollout: model.stubs,
          });
        }
      } else if (file.key < expected) {
        v("1-overlap", `commit ${file.key} starts inside seqs already covered (up to ${expected - 1})`);
      }
      expected = Math.max(expected, file.lastSeq + 1);

      if (file.kind === "stub") {
        if (file.tombstone <= file.lastSeq) {
          v("1-stub", `stub ${file.key}..${file.lastSeq} names tombstone ${file.tombstone}, not after it`, file);
          continue;
        }
        // Follow the chain of tombstones to a real delete commit.
        let t = file.tombstone;
        const seen = new Set<number>();
        for (;;) {
          if (seen.has(t)) {
            v("1-stub", `stub ${file.key}: tombstone chain loops at ${t}`);
            break;
          }
          seen.add(t);
          const target = thread.byKey.get(t);
          if (!target) {
            v("1-stub", `stub ${file.key}: tombstone ${t} has no commit file`, file);
            break;
          }
          if (target.kind === "commit") {
            if (target.patches.length !== 1 || target.patches[0]?.op !== "delete" || target.lastSeq !== t) {
              v("1-stub", `stub ${file.key}: tombstone ${t} is a commit that is not a delete`, target);
            }
            break;
          }
          if (target.firstSeq !== t || target.lastSeq !== t || target.tombstone <= t) {
            v("1-stub", `stub ${file.key}: tombstone ${t} is a stub that cannot have been a tombstone`, target);
            break;
          }
          t = target.tombstone;
        }
        continue;
      }

      // 2. A real commit: consecutive patches, a tombstone alone, the artifact's thread and seq.
      const patches = file.patches;
      patches.forEach((p, i) => {
        if (p.seq !== file.firstSeq + i) v("2-commit", `commit ${file.key}: patch ${i} has seq ${p.seq}`);
        if (p.op === "delete") {
          if (patches.length !== 1) v("2-tombstone", `commit ${file.key}: a delete is not alone in its commit`, file);
          return;
        }
        if (!["add", "update", "remove"].includes(p.op)) v("2-commit", `commit ${file.key}: unknown op ${p.op}`);
        if (p.artifact?.threadId !== thread.id) v("2-commit", `commit ${file.key}: seq ${p.seq} is another thread's`);
        if (p.op !== "remove" && p.artifact?.seq !== p.seq) {
          v("2-commit", `commit ${file.key}: seq ${p.seq}'s artifact says seq ${p.artifact?.seq}`);
        }
      });
      if (file.lastSeq !== file.firstSeq + patches.length - 1) {
        v("2-commit", `commit ${file.key}: lastSeq ${file.lastSeq} with ${patches.length} patches`);
      }
      if (file.fork && file.key !== lifeStartOf(thread, file.key)) {
        v("2-fork", `commit ${file.key} has a fork marker but does not start a life`, file.fork);
      }
      // Below the latest tombstone nothing real may remain: a stub in the stub design, nothing in the older one.
      if (file.key < thread.latest) {
        const reused = latestAt !== undefined && file.at > latestAt;
        v(
          reused ? "1-key-reused" : "1-not-erased",
          `real commit ${file.key}..${file.lastSeq} below the latest tombstone ${thread.latest}${
            reused ? ` written after that delete (at ${file.at} > ${latestAt}): a freed key was reused` : ""
          }`,
          { commit: file, tombstoneAt: latestAt },
        );
      }
    }
    thread.head = expected - 1;

    // The latest tombstone is a real delete commit; the life marker names it.
    if (thread.latest > 0) {
      const t = thread.byKey.get(thread.latest);
      if (!t || t.kind !== "commit" || t.patches[0]?.op !== "delete") {
        v("1-tombstone", `the latest tombstone ${thread.latest} is not a real delete commit`, t);
      }
      const since = thread.life?.since;
      if (since !== thread.latest) {
        v("1-life", `life.json says since ${JSON.stringify(since)}, the latest tombstone is ${thread.latest}`);
      }
    } else if (thread.life !== null) {
      v("1-life", `life.json exists (${JSON.stringify(thread.life)}) but the thread has no tombstone`);
    }

    // 2b. Each patch follows the state before it (replayed per life, from real commits only).
    let artifacts: Map<string, any> | null = new Map();
    for (let s = 1; s <= thread.head; s++) {
      const entry = thread.patches.get(s);
      if (!entry) {
        artifacts = null; // a stub or a hole: unknown until the next life starts
        continue;
      }
      const { patch, commit } = entry;
      if (patch.op === "delete") {
        artifacts = new Map();
        continue;
      }
      if (artifacts === null) continue;
      const a = patch.artifact;
      const prev = artifacts.get(a?.id);
      const fork = commit.fork !== undefined;
      if (patch.op === "add") {
        if (prev) v("2-replay", `seq ${s}: add of ${a.id}, which already exists`, { patch, prev });
        if (a.identityKey !== null) {
          const twin = [...artifacts.values()].find((x) =>
            x.artifactType === a.artifactType && x.identityKey === a.identityKey
          );
          if (twin) v("2-identity", `seq ${s}: a second live artifact with identity ${a.identityKey}`, { patch, twin });
        }
        if (!fork && (a.version !== 1 || a.createdAt !== patch.at || a.updatedAt !== patch.at)) {
          v("2-replay", `seq ${s}: a create that is not version 1 at the patch's time`, patch);
        }
        artifacts.set(a.id, a);
      } else if (patch.op === "update") {
        if (!prev) v("2-replay", `seq ${s}: update of ${a?.id}, which does not exist`, patch);
        else {
          const same = ["id", "threadId", "artifactType", "identityKey", "createdAt"].every((k) => prev[k] === a[k]);
          if (!same || a.version !== prev.version + 1 || a.updatedAt !== patch.at) {
            v("2-replay", `seq ${s}: update of ${a.id} does not follow version ${prev.version} (lost update?)`, {
              patch,
              prev,
            });
          }
        }
        artifacts.set(a.id, a);
      } else if (patch.op === "remove") {
        if (!prev) v("2-replay", `seq ${s}: remove of ${a?.id}, which does not exist`, patch);
        else if (!isDeepStrictEqual(prev, a)) {
          v("2-replay", `seq ${s}: remove of ${a.id} does not carry its last state`, { patch, prev });
        }
        artifacts.delete(a?.id);
      }
    }

    // 1c. Derived objects: none of an earlier life; the rest agrees with the commits.
    for (const delta of thread.deltas) {
      if (delta.firstSeq < thread.latest) {
        v("1c-derived", `deltas/${delta.name} of an earlier life remains (latest tombstone ${thread.latest})`);
        continue;
      }
      const patches = delta.json?.patches;
      for (let s = delta.firstSeq; s <= delta.lastSeq; s++) {
        const mine = Array.isArray(patches) ? patches.find((p: any) => p?.seq === s) : undefined;
        const real = thread.patches.get(s)?.patch;
        if (!real || !isDeepStrictEqual(mine, real)) {
          v("1c-derived", `deltas/${delta.name}: seq ${s} differs from its commit`, { delta: mine, commit: real });
          break;
        }
      }
    }
    for (const snapshot of thread.snapshots) {
      if (snapshot.seq < thread.latest) {
        v("1c-derived", `snapshots/${snapshot.name} of an earlier life remains (latest tombstone ${thread.latest})`);
        continue;
      }
      const view = replayAt(thread, snapshot.seq);
      if (!view) continue;
      const { v: _v, threadId, seq, ...rest } = snapshot.json ?? {};
      const mine = { id: threadId, rolloutSeq: seq, ...rest };
      if (!isDeepStrictEqual(mine, view)) {
        v("1c-derived", `snapshots/${snapshot.name} differs from the replay at ${snapshot.seq}`, {
          snapshot: mine,
          replay: view,
        });
      }
    }
    if (thread.compaction && thread.latest > 0 && (thread.compaction.since ?? 1) < thread.latest) {
      v("1c-derived", `compaction.json of an earlier life remains`, thread.compaction);
    }
  }
  return { sweptSeqs };
}

// ---------------------------------------------------------------------------------------
// Checks 3-9: the history against the rollout.

export interface CheckInput {
  model: RolloutModel;
  requests: RequestRecord[];
  readers: ReaderRecord[];
}

export interface CheckResult {
  violations: Violation[];
  notes: string[];
}

const short = (r: RequestRecord) => ({
  n: r.n,
  lane: r.lane,
  process: r.process,
  kind: r.kind,
  thread: r.thread,
  path: r.path,
  body: r.body,
  start: Math.round(r.start),
  end: Math.round(r.end),
  status: r.status,
  ...(r.error ? { error: r.error } : {}),
  response: r.response,
});

/** The (thread, seq) a write's answer says its patch is at, for writes whose answer names one. */
function ackedSeq(r: RequestRecord): number | undefined {
  if (r.outcome !== "ack") return undefined;
  const j = r.response;
  switch (r.kind) {
    case "create":
    case "create-identity":
    case "create-repeat":
      return r.status === 201 ? j?.artifact?.seq : undefined;
    case "update":
    case "merge":
      return j?.artifact?.seq;
    case "remove":
      return j?.removed?.seq;
    case "delete-thread":
      return j?.deleted?.seq;
    default:
      return undefined;
  }
}

/** The event an acknowledged write's patch must appear as on a stream (only the fields the answer determines). */
function expectedEvent(r: RequestRecord, seq: number): { event: string; data?: any; removedId?: string } | undefined {
  const j = r.response;
  switch (r.kind) {
    case "create":
    case "create-identity":
    case "create-repeat":
      return { event: "artifact-updated", data: { threadId: r.thread, seq, op: "add", artifact: j.artifact } };
    case "update":
    case "merge":
      return { event: "artifact-updated", data: { threadId: r.thread, seq, op: "update", artifact: j.artifact } };
    case "remove":
      return { event: "artifact-updated", removedId: j.removed.id };
    case "delete-thread":
      return { event: "thread-deleted", data: { threadId: r.thread, seq } };
    default:
      return undefined;
  }
}

export function checkHistory(input: CheckInput): CheckResult {
  const { model, requests, readers } = input;
  const out: Violation[] = [...model.violations];
  const notes: string[] = [];
  const { sweptSeqs } = checkRollout(model, out);
  if (sweptSeqs > 0) {
    notes.push(
      `${sweptSeqs} seqs missing below latest tombstones, taken for the older design's sweep (no stubs in the rollout)`,
    );
  }
  const threadOf = (id: string) => model.threads.get(id);

  // Every event any reader received, by thread and seq (parsed once).
  const received = new Map<string, Map<number, { reader: string; event: string; data: any; raw: string }[]>>();
  for (const reader of readers) {
    for (const e of reader.events) {
      let data: any;
      try {
        data = JSON.parse(e.data);
      } catch {
        out.push({
          check: "8-sse",
          thread: reader.thread,
          message: `${reader.name}: event data is not JSON`,
          details: e,
        });
        continue;
      }
      const seq = Number(e.id);
      let byThread = received.get(reader.thread);
      if (!byThread) received.set(reader.thread, byThread = new Map());
      let list = byThread.get(seq);
      if (!list) byThread.set(seq, list = []);
      list.push({ reader: reader.name, event: e.event, data, raw: e.data });
    }
  }

  // 3. Every acknowledged write is at its seq, with its content.
  const owners = new Map<string, RequestRecord>();
  for (const r of requests) {
    if (r.kind === "read") continue;
    const v = (check: string, message: string, details?: unknown) =>
      out.push({ check, thread: r.thread, message, details: { request: short(r), ...(details as object) } });
    const j = r.response;
    if (r.status !== null && r.status >= 500 && r.status !== 503) {
      v("3-5xx", `${r.kind} answered ${r.status}`, {});
    }
    if (r.outcome !== "ack") continue;
    const thread = threadOf(r.thread);

    if (r.kind === "fork") {
      checkFork(model, r, out);
      continue;
    }
    if (r.kind.startsWith("create") && r.status === 200) {
      // An idempotent create: the artifact existed, with this payload, when it was decided.
      const a = j?.artifact;
      const h = j?.thread?.rolloutSeq;
      if (!a || !isDeepStrictEqual(a.payload, r.body.payload) || a.identityKey !== r.body.identityKey) {
        v("3-idempotent", "idempotent create answered another artifact than the one asked for", {});
        continue;
      }
      if (!(a.seq <= h)) v("3-idempotent", `idempotent create: artifact seq ${a.seq} after rolloutSeq ${h}`, {});
      if (thread) {
        const view = replayAt(thread, h);
        if (view === null) v("3-idempotent", `idempotent create answered at seq ${h}, a tombstone`, {});
        else if (view) {
          const found = view.artifacts.find((x) => x.id === a.id);
          if (!isDeepStrictEqual(found, a)) {
            v("3-idempotent", `idempotent create: the replay at ${h} does not hold the artifact answered`, { found });
          }
        } else {
          const place = placeOf(model, thread, a.seq);
          if (place.kind === "real" && !isDeepStrictEqual(place.patch.artifact, a)) {
            v("3-idempotent", `idempotent create: patch ${a.seq} is not the artifact answered`, { patch: place.patch });
          }
        }
      } else v("3-idempotent", "idempotent create on a thread with no rollout", {});
      continue;
    }

    const seq = ackedSeq(r);
    if (!isSeq(seq)) {
      v("3-answer", `acknowledged ${r.kind} without a seq in its answer`, {});
      continue;
    }
    // 4. One acknowledged write per seq.
    const key = `${r.thread}\u0000${seq}`;
    const owner = owners.get(key);
    if (owner) {
      out.push({
        check: "4-seq-owner",
        thread: r.thread,
        message: `seq ${seq} acknowledged to two writes`,
        details: { first: short(owner), second: short(r) },
      });
    } else owners.set(key, r);

    // The answer itself says what was asked.
    if (r.kind !== "delete-thread" && j?.thread?.rolloutSeq !== seq) {
      v("3-answer", `answer's thread.rolloutSeq ${j?.thread?.rolloutSeq} is not the write's seq ${seq}`, {});
    }
    if (r.kind.startsWith("create")) {
      const a = j.artifact;
      const asked = r.body;
      if (
        a?.threadId !== r.thread || a.artifactType !== asked.artifactType ||
        a.identityKey !== (asked.identityKey ?? null) || !isDeepStrictEqual(a.payload, asked.payload) || a.version !== 1
      ) {
        v("3-answer", "create answered an artifact other than the one asked for", {});
      }
    } else if (r.kind === "update") {
      if (j.artifact?.id !== r.artifactId || !isDeepStrictEqual(j.artifact?.payload, r.body.payload)) {
        v("3-answer", "update answered an artifact other than the one asked for", {});
      }
    } else if (r.kind === "merge") {
      if (j.artifact?.id !== r.artifactId || j.artifact?.payload?.m !== r.tag) {
        v("3-answer", "merge answered an artifact without its merge", {});
      }
    } else if (r.kind === "remove" && j.removed?.id !== r.artifactId) {
      v("3-answer", "remove answered another artifact", {});
    }

    if (r.kind !== "delete-thread" && thread?.tombstones.includes(seq)) {
      v("3-content", `acknowledged ${r.kind} at seq ${seq}, which the rollout names a tombstone`, {});
    }
    const place = placeOf(model, thread, seq);
    if (place.kind === "missing" || place.kind === "beyond") {
      v(
        "3-lost",
        `acknowledged ${r.kind} at seq ${seq}: no such seq in the rollout (${place.kind}, head ${thread?.head ?? 0})`,
        {},
      );
    } else if (place.kind === "real") {
      const p = place.patch;
      let ok: boolean;
      if (r.kind === "delete-thread") ok = p.op === "delete";
      else if (r.kind === "remove") ok = p.op === "remove" && p.artifact?.id === j.removed.id;
      else ok = p.op === (r.kind.startsWith("create") ? "add" : "update") && isDeepStrictEqual(p.artifact, j.artifact);
      if (!ok) v("3-content", `acknowledged ${r.kind} at seq ${seq} is not the patch there`, { patch: p });
    } else if (place.kind === "stub") {
      if (r.kind === "delete-thread" && (place.stub.firstSeq !== seq || place.stub.lastSeq !== seq)) {
        v(
          "3-content",
          `acknowledged delete at seq ${seq} is inside stub ${place.stub.firstSeq}..${place.stub.lastSeq}`,
          {
            stub: place.stub,
          },
        );
      }
    }
    // What the streams delivered at that seq is what the write answered.
    const expected = expectedEvent(r, seq);
    for (const got of received.get(r.thread)?.get(seq) ?? []) {
      const ok = expected?.removedId !== undefined
        ? got.event === expected.event && got.data?.op === "remove" && got.data?.artifact?.id === expected.removedId
        : got.event === expected?.event && isDeepStrictEqual(got.data, expected?.data);
      if (!ok) {
        v("3-sse", `${got.reader} received at seq ${seq} something other than the acknowledged ${r.kind}`, {
          event: got,
        });
      }
    }
  }

  // 5. Nothing applied twice; a refused request applied nowhere.
  const tagged = new Map<string, RequestRecord[]>();
  for (const r of requests) {
    if (r.tag === undefined || r.kind === "read") continue;
    let list = tagged.get(r.tag);
    if (!list) tagged.set(r.tag, list = []);
    list.push(r);
  }
  const appliedAt = new Map<string, Set<string>>();
  const note = (tag: string | undefined, where: string) => {
    if (tag === undefined) return;
    let set = appliedAt.get(tag);
    if (!set) appliedAt.set(tag, set = new Set());
    set.add(where);
  };
  for (const thread of model.threads.values()) {
    for (const [seq, { patch, commit }] of thread.patches) {
      if (commit.fork) continue; // a fork copies its source's payloads
      note(producerTag(patch.op, patch.artifact), `${thread.id}@${seq}`);
    }
  }
  for (const [threadId, bySeq] of received) {
    const thread = threadOf(threadId);
    for (const [seq, list] of bySeq) {
      if (thread?.patches.get(seq)?.commit.fork) continue;
      for (const got of list) {
        if (got.event === "artifact-updated") note(producerTag(got.data?.op, got.data?.artifact), `${threadId}@${seq}`);
      }
    }
  }
  for (const [tag, where] of appliedAt) {
    const senders = tagged.get(tag);
    if (!senders) {
      out.push({ check: "5-unknown-tag", message: `tag ${tag} applied but never sent`, details: [...where] });
      continue;
    }
    const allowed = senders.filter((r) => r.outcome !== "refused").length;
    if (where.size > allowed) {
      out.push({
        check: allowed === 0 ? "5-refused-applied" : "5-applied-twice",
        thread: senders[0]?.thread,
        message: allowed === 0
          ? `tag ${tag}: refused (${senders.map((r) => r.status).join(",")}) but applied at ${[...where].join(", ")}`
          : `tag ${tag}: ${allowed} request(s) not refused, applied ${where.size} times: ${[...where].join(", ")}`,
        details: senders.map(short),
      });
    }
  }

  // 6. Real-time order: acknowledged before sent means an earlier seq.
  type Timed = { r: RequestRecord; seq: number };
  const byThread = new Map<string, { acks: Timed[]; writes: Timed[] }>();
  const entry = (t: string) => {
    let e = byThread.get(t);
    if (!e) byThread.set(t, e = { acks: [], writes: [] });
    return e;
  };
  for (const r of requests) {
    const seq = ackedSeq(r);
    if (isSeq(seq)) {
      entry(r.thread).acks.push({ r, seq });
      entry(r.thread).writes.push({ r, seq });
    } else if (r.outcome === "unknown" && r.tag !== undefined && r.kind !== "create-repeat") {
      // An unknown outcome that was applied: its one patch is where its tag is.
      const where = [...(appliedAt.get(r.tag) ?? [])];
      if (where.length === 1) {
        const [t, s] = (where[0] as string).split("@");
        if (t === r.thread) entry(r.thread).writes.push({ r, seq: Number(s) });
      }
    }
  }
  // The acknowledged write with the highest seq among those answered before `time`, per thread.
  const latestAckBefore = new Map<string, (time: number) => Timed | undefined>();
  for (const [threadId, { acks }] of byThread) {
    acks.sort((a, b) => a.r.end - b.r.end);
    const prefixMax: Timed[] = [];
    for (const a of acks) {
      const before = prefixMax.at(-1);
      prefixMax.push(before && before.seq > a.seq ? before : a);
    }
    latestAckBefore.set(threadId, (time) => {
      // The acks that ended before `time`: a prefix of `acks`.
      let lo = 0;
      let hi = acks.length;
      while (lo < hi) {
        const mid = (lo + hi) >> 1;
        if ((acks[mid] as Timed).r.end < time) lo = mid + 1;
        else hi = mid;
      }
      return lo > 0 ? prefixMax[lo - 1] : undefined;
    });
  }
  for (const [threadId, { writes }] of byThread) {
    const before = latestAckBefore.get(threadId) as (time: number) => Timed | undefined;
    for (const b of writes) {
      const max = before(b.r.start);
      if (max && max.seq >= b.seq) {
        out.push({
          check: "6-real-time",
          thread: threadId,
          message: `${b.r.kind} sent after an acknowledged write at seq ${max.seq} landed at seq ${b.seq}`,
          details: { earlier: short(max.r), later: short(b.r) },
        });
      }
    }
  }

  // Unknown-outcome and refused forks: a target that exists is a fork of the source.
  for (const r of requests) {
    if (r.kind !== "fork" || r.outcome === "ack" || !r.target) continue;
    const target = threadOf(r.target);
    if (!target || target.files.length === 0) continue;
    const first = target.byKey.get(1);
    if (r.outcome === "refused") {
      out.push({
        check: "5-refused-applied",
        thread: r.target,
        message: `fork refused (${r.status}) but its target exists`,
        details: short(r),
      });
    } else if (!first || first.kind !== "commit" || first.fork?.threadId !== r.thread) {
      out.push({
        check: "3-fork",
        thread: r.target,
        message: "the target of a fork does not start with the fork",
        details: { request: short(r), first },
      });
    }
  }

  // 8. Streams: increasing ids, gapless within a life, equal to the rollout.
  for (const reader of readers) {
    const thread = threadOf(reader.thread);
    const tombstones = new Set(thread?.tombstones ?? []);
    for (const r of requests) {
      if (r.kind === "delete-thread" && r.thread === reader.thread && r.outcome === "ack") {
        tombstones.add(r.response?.deleted?.seq);
      }
    }
    let prev: { seq: number; event: string } = { seq: 0, event: "start" };
    const v = (message: string, details?: unknown) =>
      out.push({ check: "8-sse", thread: reader.thread, message: `${reader.name}: ${message}`, details });
    let reported = 0;
    for (const e of reader.events) {
      if (reported > 5) break; // one broken stream says enough
      const seq = Number(e.id);
      let data: any;
      try {
        data = JSON.parse(e.data);
      } catch {
        continue;
      }
      const before = out.length;
      if (!isSeq(seq) || data?.seq !== seq || data?.threadId !== reader.thread) {
        v(`event id ${e.id} does not match its data`, e);
      } else if (seq <= prev.seq) {
        v(`id ${seq} after ${prev.seq}: not increasing (connection ${e.connection} at ${e.process})`, e);
      } else if (e.event === "artifact-updated" && seq !== prev.seq + 1) {
        v(
          `gap: ${prev.event} ${prev.seq}, then artifact-updated ${seq} (connection ${e.connection} at ${e.process})`,
          e,
        );
      } else if (e.event !== "artifact-updated" && e.event !== "thread-deleted") {
        v(`unknown event ${e.event}`, e);
      }
      if (isSeq(seq)) {
        const place = placeOf(model, thread, seq);
        if (place.kind === "beyond") v(`event at seq ${seq}, past the rollout's head ${thread?.head ?? 0}`, e);
        else if (place.kind === "real") {
          const p = place.patch;
          const want = p.op === "delete"
            ? { event: "thread-deleted", data: { threadId: reader.thread, seq } }
            : { event: "artifact-updated", data: { threadId: reader.thread, seq, op: p.op, artifact: p.artifact } };
          if (e.event !== want.event || !isDeepStrictEqual(data, want.data)) {
            v(`event at seq ${seq} differs from the rollout's patch`, {
              received: { event: e.event, data },
              rollout: want,
            });
          }
        } else if (
          e.event === "thread-deleted" && !tombstones.has(seq) &&
          !(place.kind === "stub" && place.stub.firstSeq === seq && place.stub.lastSeq === seq)
        ) {
          // A stubbed tombstone is a one-seq stub (a later delete overwrote it); anything else is no tombstone.
          v(`thread-deleted at seq ${seq}, which is no known tombstone`, { e, place });
        } else if (e.event === "artifact-updated" && tombstones.has(seq)) {
          v(`artifact-updated at seq ${seq}, a tombstone`, e);
        }
      }
      if (out.length > before) reported++;
      if (isSeq(seq) && seq > prev.seq) prev = { seq, event: e.event };
    }
  }

  // 9. Strong reads during the run: at least every write acknowledged before, and equal to the replay.
  for (const r of requests) {
    if (r.kind !== "read" || r.outcome !== "ack") continue;
    const thread = threadOf(r.thread);
    const seen = r.response?.thread;
    const h = seen?.rolloutSeq;
    const maxBefore = latestAckBefore.get(r.thread)?.(r.start)?.seq ?? 0;
    if (!isSeq(h) || h < maxBefore) {
      out.push({
        check: "9-read",
        thread: r.thread,
        message: `strong read at rolloutSeq ${h} misses a write acknowledged before it at seq ${maxBefore}`,
        details: short(r),
      });
      continue;
    }
    if (!thread) continue;
    const view = replayAt(thread, h);
    if (view === null || (view === undefined && thread.tombstones.includes(h))) {
      out.push({
        check: "9-read",
        thread: r.thread,
        message: `strong read answered 200 at seq ${h}, a tombstone`,
        details: short(r),
      });
    } else if (view && !isDeepStrictEqual(seen, view)) {
      out.push({
        check: "9-read",
        thread: r.thread,
        message: `strong read at seq ${h} differs from the replay`,
        details: { read: short(r), replay: view },
      });
    }
  }
  // 9b. Refusals that cannot be: a 404 while the thread or the artifact provably lived all along.
  const headViews = new Map<string, ThreadView | null | undefined>();
  const createdBy = new Map<string, RequestRecord>();
  const ackedDeletes = new Map<string, number[]>();
  for (const c of requests) {
    if (c.outcome !== "ack") continue;
    if (c.kind.startsWith("create") && c.response?.artifact?.id) {
      createdBy.set(`${c.thread}/${c.response.artifact.id}`, c);
    }
    if (c.kind === "delete-thread") {
      ackedDeletes.set(c.thread, [...(ackedDeletes.get(c.thread) ?? []), c.response?.deleted?.seq]);
    }
  }
  for (const r of requests) {
    if (r.status !== 404) continue;
    const thread = threadOf(r.thread);
    const code = r.response?.code;
    if (r.kind === "read" && code === "thread_not_found") {
      const max = latestAckBefore.get(r.thread)?.(r.start);
      if (!max || max.r.kind === "delete-thread") continue;
      // Every seq that may be a tombstone: known ones, acknowledged deletes, one-seq stubs (stubbed tombstones).
      const later = (thread?.tombstones ?? []).some((t) => t > max.seq) ||
        (ackedDeletes.get(r.thread) ?? []).some((t) => t > max.seq) ||
        (thread?.files ?? []).some((f) => f.kind === "stub" && f.firstSeq === f.lastSeq && f.firstSeq > max.seq);
      if (!later) {
        out.push({
          check: "9-refusal",
          thread: r.thread,
          message: `read answered 404 after a write acknowledged at seq ${max.seq}, with no delete after it`,
          details: { read: short(r), write: short(max.r) },
        });
      }
    }
    if ((r.kind === "update" || r.kind === "merge" || r.kind === "remove") && code === "artifact_not_found" && thread) {
      // The artifact's create was acknowledged before this request was sent and it still lives at the head:
      // it existed throughout (nothing re-creates an id).
      const created = createdBy.get(`${r.thread}/${r.artifactId}`);
      if (!created || created.end >= r.start || thread.head === thread.latest) continue;
      if (!headViews.has(thread.id)) headViews.set(thread.id, replayAt(thread, thread.head));
      const now = headViews.get(thread.id);
      if (now && now.artifacts.some((a) => a.id === r.artifactId)) {
        out.push({
          check: "9-refusal",
          thread: r.thread,
          message:
            `${r.kind} of ${r.artifactId} answered artifact_not_found, yet it exists from its acknowledged create to the head`,
          details: { request: short(r), create: short(created) },
        });
      }
    }
  }
  return { violations: out, notes };
}

function checkFork(model: RolloutModel, r: RequestRecord, out: Violation[]): void {
  const v = (message: string, details?: unknown) =>
    out.push({ check: "3-fork", thread: r.target, message, details: { request: short(r), ...(details as object) } });
  const answered = r.response?.thread;
  const target = r.target ? model.threads.get(r.target) : undefined;
  const first = target?.byKey.get(1);
  if (!answered || answered.id !== r.target || answered.forkedFrom?.threadId !== r.thread) {
    v("fork answered without its forkedFrom");
    return;
  }
  if (!target || !first || first.kind !== "commit") {
    v("acknowledged fork: the target's first commit is not in the rollout", { first });
    return;
  }
  if (!isDeepStrictEqual(first.fork, answered.forkedFrom)) {
    v("the target's first commit has no fork marker equal to the answer's forkedFrom", { marker: first.fork });
    return;
  }
  const source = model.threads.get(r.thread);
  const at = source ? replayAt(source, answered.forkedFrom.seq) : undefined;
  if (at) {
    const want = at.artifacts.map((a, i) => ({ ...a, threadId: r.target, seq: i + 1 }));
    const got = first.patches.map((p) => (p.op === "add" ? p.artifact : p));
    if (!isDeepStrictEqual(got, want)) v("the fork's artifacts are not the source's at the fork seq", { got, want });
  } else if (at === null) v(`forked at seq ${answered.forkedFrom.seq}, a tombstone of the source`);
  const view = replayAt(target, answered.rolloutSeq);
  if (view && !isDeepStrictEqual(view, answered)) v("the fork's answer differs from the replay", { replay: view });
}

// ---------------------------------------------------------------------------------------
// Check 7: reads after the rebuild.

export interface PlannedRead {
  thread: string;
  /** Path and query, e.g. `/v1/threads/t1?atSeq=4`. */
  path: string;
  expect: { status: 200; body: { thread: ThreadView } } | { status: 404; code: string } | { status: "unknown" };
}

/** What every thread must read as now: strong, from the cache, and as of a few seqs. */
export function planFinalReads(model: RolloutModel): PlannedRead[] {
  const plans: PlannedRead[] = [];
  for (const thread of model.threads.values()) {
    const base = `/v1/threads/${encodeURIComponent(thread.id)}`;
    if (thread.head === 0) continue;
    const current = thread.head === thread.latest ? null : replayAt(thread, thread.head);
    const now: PlannedRead["expect"] = current === null
      ? { status: 404, code: "thread_not_found" }
      : current === undefined
      ? { status: "unknown" }
      : { status: 200, body: { thread: current } };
    plans.push({ thread: thread.id, path: base, expect: now });
    plans.push({ thread: thread.id, path: `${base}?consistency=cache`, expect: now });
    const start = thread.latest + 1;
    const seqs = new Set<number>();
    if (thread.head >= start) {
      seqs.add(start);
      seqs.add(Math.floor((start + thread.head) / 2));
      seqs.add(thread.head);
    }
    for (const n of seqs) {
      const view = replayAt(thread, n);
      plans.push({
        thread: thread.id,
        path: `${base}?atSeq=${n}`,
        expect: view
          ? { status: 200, body: { thread: view } }
          : view === null
          ? { status: 404, code: "thread_not_found" }
          : { status: "unknown" },
      });
    }
    // Before the current life, and past the head: not found.
    const gone = [thread.head + 1];
    if (thread.latest > 0) gone.push(thread.latest);
    if (thread.latest > 1) gone.push(thread.latest - 1);
    for (const n of gone) {
      plans.push({ thread: thread.id, path: `${base}?atSeq=${n}`, expect: { status: 404, code: "thread_not_found" } });
    }
  }
  return plans;
}

export function checkFinalReads(
  plans: PlannedRead[],
  results: { status: number | null; json: any; error?: string }[],
): Violation[] {
  const out: Violation[] = [];
  plans.forEach((plan, i) => {
    const got = results[i];
    const expect = plan.expect;
    if (!got) return;
    if (expect.status === "unknown") {
      out.push({
        check: "7-final-read",
        thread: plan.thread,
        message: `${plan.path}: the current life cannot be replayed (stubbed or missing commits)`,
      });
      return;
    }
    const ok = expect.status === 200
      ? got.status === 200 && isDeepStrictEqual(got.json, expect.body)
      : got.status === 404 && got.json?.code === expect.code;
    if (!ok) {
      out.push({
        check: "7-final-read",
        thread: plan.thread,
        message: `GET ${plan.path}: ${got.status ?? got.error}, expected ${expect.status}${
          expect.status === 200 && got.status === 200
            ? ` (rolloutSeq ${got.json?.thread?.rolloutSeq}, expected ${expect.body.thread.rolloutSeq}; ${got.json?.thread?.artifacts?.length} artifacts, expected ${expect.body.thread.artifacts.length})`
            : ""
        }`,
        details: { got: got.json, expected: expect.status === 200 ? expect.body : expect },
      });
    }
  });
  return out;
}

/** Commit files that differ between two reads of the folder (nothing may change once writes stopped). */
export function compareRollouts(before: RolloutModel, after: RolloutModel): Violation[] {
  const out: Violation[] = [];
  const ids = new Set([...before.threads.keys(), ...after.threads.keys()]);
  for (const id of ids) {
    const a = before.threads.get(id)?.texts ?? new Map<string, string>();
    const b = after.threads.get(id)?.texts ?? new Map<string, string>();
    for (const name of new Set([...a.keys(), ...b.keys()])) {
      if (a.get(name) !== b.get(name)) {
        out.push({
          check: "10-stable",
          thread: id,
          message: `commits/${name} changed after the rebuild, with no writes (${a.has(name) ? "changed" : "appeared"}${
            b.has(name) ? "" : ", removed"
          })`,
          details: { before: a.get(name)?.slice(0, 400), after: b.get(name)?.slice(0, 400) },
        });
      }
    }
  }
  return out;
}
