/**
 * The Node server's tracer: the `@opentelemetry/api` Tracer the shared code's spans go
 * to when tracing is on, sampled by the SDK's samplers (the spec's rules, unchanged) and
 * with the SDK's id generator. A sampled span is plain data until it ends, then one
 * record handed to the export (span-export.ts), which encodes it into the next batch
 * (otlp-protobuf.ts) and sends batches through the SDK's OTLP/HTTP delegate.
 *
 * Why not the SDK's TracerProvider and BatchSpanProcessor: measured, they cost a create
 * ~35 µs of CPU with every span sampled (four spans a create), this ~20 (in process,
 * `.exp`-style harness in docs/decisions.md, "Traces on Node"): the SDK's span sanitizes
 * and counts what ours need not (our attributes are the code's constants), and its
 * serializer makes a size pass and a write pass over `ReadableSpan`s built for it.
 */
import {
  type Attributes,
  type AttributeValue,
  type Context,
  context as contexts,
  type Exception,
  isSpanContextValid,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  type SpanOptions,
  type SpanStatus,
  SpanStatusCode,
  type TimeInput,
  trace,
  TraceFlags,
  type Tracer,
  type TracerProvider,
  type TraceState,
} from "@opentelemetry/api";
import { type Sampler, SamplingDecision } from "@opentelemetry/sdk-trace";
import { SpanId, type SpanIds, TraceId } from "./span-ids.ts";
import type { EventRecord, LinkRecord, SpanRecord } from "./span-record.ts";

/** Per span, as the SDK's defaults: what is past these is dropped, so a span stays small. */
const MAX_ATTRIBUTES = 128;
const MAX_EVENTS = 128;
const MAX_LINKS = 128;

const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });
const NO_LINKS: readonly LinkRecord[] = Object.freeze([]);
const NO_EVENTS: readonly EventRecord[] = Object.freeze([]);
const NO_OPTIONS: SpanOptions = Object.freeze({});
const NO_ATTRIBUTES: Attributes = Object.freeze({});

/**
 * Frozen attribute sets a span keeps as they are: every value set and a scalar (an array
 * in a frozen set could still change), no more than a span keeps.
 */
const sharedAttributes = new WeakSet<Attributes>();

/** Whether `attributes` is a set a span may share (checked once per set). */
function isSharedAttributes(attributes: Attributes): boolean {
  if (sharedAttributes.has(attributes)) return true;
  if (!Object.isFrozen(attributes) || Object.getPrototypeOf(attributes) !== Object.prototype) return false;
  const values = Object.values(attributes);
  const scalar = (value: unknown) =>
    typeof value === "string" || typeof value === "number" || typeof value === "boolean";
  if (values.length > MAX_ATTRIBUTES || !values.every(scalar)) return false;
  sharedAttributes.add(attributes);
  return true;
}

/** Read once: `performance.timeOrigin` is a getter that asks the runtime on every read. */
const TIME_ORIGIN = performance.timeOrigin;

/**
 * A trace's clock in this process, as the SDK's `AnchoredClock`: the wall clock read once,
 * when the trace's first span here starts, plus the monotonic clock's time since.
 *
 * Why not the monotonic clock alone (`timeOrigin + performance.now()`): it drifts from the
 * wall clock over a long-lived process (NTP slews the one, not the other; measured ~1 ms
 * after minutes in one test worker), and span times would drift away from the log lines'
 * and from other services' spans. Why not `Date.now()` alone: it can step back inside a
 * span. Anchored per trace, durations are monotonic and a trace starts on the wall clock.
 */
class AnchoredClock {
  readonly #wallMs = Date.now();
  readonly #monotonicMs = performance.now();

  /** `time` as epoch ms when the caller gave one, else now on this clock. */
  at(time: TimeInput | undefined): number {
    return time === undefined ? this.#wallMs + (performance.now() - this.#monotonicMs) : epochMsOf(time);
  }
}

/** A span's explicit `TimeInput` (epoch ms, a Date, or [seconds, nanoseconds]) as epoch milliseconds. */
export function epochMsOf(time: TimeInput): number {
  if (typeof time === "number") {
    // The API allows a `performance.now()` reading too: below the time origin it is one.
    return time < TIME_ORIGIN ? TIME_ORIGIN + time : time;
  }
  if (time instanceof Date) return time.getTime();
  return time[0] * 1000 + time[1] / 1e6;
}

export interface NodeTracerOptions {
  sampler: Sampler;
  ids: Pick<SpanIds, "traceId" | "spanId">;
  /** Takes each recorded span once it has ended. */
  record: (span: SpanRecord) => void;
}

export class NodeTracerProvider implements TracerProvider {
  readonly #o: NodeTracerOptions;
  readonly #tracers = new Map<string, NodeTracer>();

  constructor(options: NodeTracerOptions) {
    this.#o = options;
  }

  getTracer(name: string): Tracer {
    let tracer = this.#tracers.get(name);
    if (!tracer) this.#tracers.set(name, tracer = new NodeTracer(name, this.#o));
    return tracer;
  }
}

class NodeTracer implements Tracer {
  readonly #scope: string;
  readonly #o: NodeTracerOptions;

  constructor(scope: string, options: NodeTracerOptions) {
    this.#scope = scope;
    this.#o = options;
  }

  startSpan(name: string, options: SpanOptions = NO_OPTIONS, ctx: Context = contexts.active()): Span {
    const parentContext = options.root ? ROOT_CONTEXT : ctx;
    const parentSpan = trace.getSpan(parentContext);
    if (parentSpan instanceof RecordedSpan) return this.#childOf(parentSpan, name, options);
    // A caller's span (or another tracer's): its ids are checked.
    const found = parentSpan?.spanContext();
    const parent = found && isSpanContextValid(found) ? found : undefined;
    const traceId = parent ? TraceId.fromHex(parent.traceId) : this.#o.ids.traceId();
    const spanId = this.#o.ids.spanId();
    const kind = options.kind ?? SpanKind.INTERNAL;
    const sampled = this.#o.sampler.shouldSample(
      parentContext,
      traceId.hex,
      name,
      kind,
      options.attributes ?? {},
      options.links ?? [],
    );
    const traceState = sampled.traceState ?? parent?.traceState;
    // RECORD (recorded, not sampled) is treated as NOT_RECORD: only sampled spans are
    // exported, and none of the spec's samplers answers RECORD.
    if (sampled.decision !== SamplingDecision.RECORD_AND_SAMPLED) {
      const traceFlags = TraceFlags.NONE;
      return trace.wrapSpanContext(
        traceState
          ? { traceId: traceId.hex, spanId: spanId.hex, traceFlags, traceState }
          : { traceId: traceId.hex, spanId: spanId.hex, traceFlags },
      );
    }
    // The first span of a trace in this process starts its clock; its descendants share it.
    const span = this.#recorded(
      name,
      options,
      traceId,
      spanId,
      traceState,
      parent ? SpanId.fromHex(parent.spanId) : undefined,
      parent?.isRemote === true,
      new AnchoredClock(),
    );
    if (sampled.attributes) span.setAttributes(sampled.attributes);
    return span;
  }

  /**
   * A child of a span of ours, which is sampled (only sampled spans are recorded here), so
   * the child is recorded without asking the sampler: every sampler `OTEL_TRACES_SAMPLER`
   * names samples it (`parentbased_*`: a sampled local parent's child is; `traceidratio`:
   * the same trace id gets the same answer; `always_on`; `always_off` records no parent).
   * It is most of the spans made (a create's commit and store spans), and the sampler's
   * answer is a call, an object and two regular expressions over the parent's ids.
   */
  #childOf(parent: RecordedSpan, name: string, options: SpanOptions): RecordedSpan {
    return this.#recorded(
      name,
      options,
      parent.traceId,
      this.#o.ids.spanId(),
      parent.w3cTraceState,
      parent.spanId,
      false,
      parent.clock,
    );
  }

  /** A recorded span with `options`' kind, start time, attributes and links. */
  #recorded(
    name: string,
    options: SpanOptions,
    traceId: TraceId,
    spanId: SpanId,
    traceState: TraceState | undefined,
    parentSpanId: SpanId | undefined,
    parentIsRemote: boolean,
    clock: AnchoredClock,
  ): RecordedSpan {
    const span = new RecordedSpan(
      this.#scope,
      name,
      options.kind ?? SpanKind.INTERNAL,
      traceId,
      spanId,
      traceState,
      parentSpanId,
      parentIsRemote,
      clock,
      clock.at(options.startTime),
      this.#o.record,
    );
    if (options.attributes) span.startAttributes(options.attributes);
    if (options.links) span.addLinks(options.links);
    return span;
  }

  startActiveSpan<F extends (span: Span) => unknown>(name: string, ...rest: unknown[]): ReturnType<F> {
    const fn = rest.pop() as F;
    const [options, ctx = contexts.active()] = rest as [SpanOptions | undefined, Context | undefined];
    const span = this.startSpan(name, options, ctx);
    return contexts.with(trace.setSpan(ctx, span), fn as (span: Span) => ReturnType<F>, undefined, span);
  }
}

/**
 * A sampled span, which is its own record: the batches take the span itself once it has
 * ended (no copy), and nothing changes it after that.
 */
class RecordedSpan implements Span, SpanRecord {
  readonly scope: string;
  name: string;
  readonly kind: SpanKind;
  readonly traceId: TraceId;
  readonly spanId: SpanId;
  readonly traceFlags = TraceFlags.SAMPLED;
  /** Serialized, for the export. */
  readonly traceState: string | undefined;
  /** As the API has it, for the span context and the children. */
  readonly w3cTraceState: TraceState | undefined;
  readonly parentSpanId: SpanId | undefined;
  readonly parentIsRemote: boolean;
  readonly startMs: number;
  endMs: number;
  attributes: Attributes = NO_ATTRIBUTES;
  status: SpanStatus = UNSET;
  links: readonly LinkRecord[] = NO_LINKS;
  events: readonly EventRecord[] = NO_EVENTS;
  /** The trace's clock, which this span's children read too. */
  readonly clock: AnchoredClock;
  readonly #record: (span: SpanRecord) => void;
  /** Made when first asked for: most spans (a store call's) are never asked. */
  #context: SpanContext | undefined;
  /** -1 while `attributes` is a shared frozen set (none, or see startAttributes), not yet this span's own. */
  #attributeCount = -1;
  #ended = false;

  constructor(
    scope: string,
    name: string,
    kind: SpanKind,
    traceId: TraceId,
    spanId: SpanId,
    traceState: TraceState | undefined,
    parentSpanId: SpanId | undefined,
    parentIsRemote: boolean,
    clock: AnchoredClock,
    startMs: number,
    record: (span: SpanRecord) => void,
  ) {
    this.scope = scope;
    this.name = name;
    this.kind = kind;
    this.traceId = traceId;
    this.spanId = spanId;
    this.w3cTraceState = traceState;
    this.traceState = traceState?.serialize();
    this.parentSpanId = parentSpanId;
    this.parentIsRemote = parentIsRemote;
    this.startMs = startMs;
    this.endMs = startMs;
    this.clock = clock;
    this.#record = record;
  }

  spanContext(): SpanContext {
    if (this.#context) return this.#context;
    const traceId = this.traceId.hex;
    const spanId = this.spanId.hex;
    const traceState = this.w3cTraceState;
    return this.#context = traceState
      ? { traceId, spanId, traceFlags: TraceFlags.SAMPLED, traceState }
      : { traceId, spanId, traceFlags: TraceFlags.SAMPLED };
  }

  /**
   * The attributes the span starts with. A frozen set the code keeps as a constant (a
   * store call's) is taken as it is, not copied, once checked that it is one the span
   * would have kept whole; it is copied only if the span is given more.
   */
  startAttributes(attributes: Attributes): void {
    if (isSharedAttributes(attributes)) {
      this.attributes = attributes;
      this.#attributeCount = -1;
    } else {
      this.setAttributes(attributes);
    }
  }

  setAttribute(key: string, value: AttributeValue | undefined): this {
    if (this.#ended || value === undefined || value === null) return this;
    if (this.#attributeCount < 0) this.#ownAttributes();
    const attributes = this.attributes;
    if (!(key in attributes)) {
      if (this.#attributeCount >= MAX_ATTRIBUTES) return this;
      this.#attributeCount++;
    }
    attributes[key] = value;
    return this;
  }

  /** The shared frozen set copied into one of the span's own, before it is added to. */
  #ownAttributes(): void {
    const shared = this.attributes;
    this.attributes = {};
    this.#attributeCount = 0;
    this.setAttributes(shared);
  }

  setAttributes(attributes: Attributes): this {
    for (const key in attributes) if (Object.hasOwn(attributes, key)) this.setAttribute(key, attributes[key]);
    return this;
  }

  addEvent(name: string, attributesOrTime?: Attributes | TimeInput, time?: TimeInput): this {
    if (this.#ended || this.events.length >= MAX_EVENTS) return this;
    const isTime = typeof attributesOrTime === "number" || attributesOrTime instanceof Date ||
      Array.isArray(attributesOrTime);
    const attributes = isTime ? undefined : attributesOrTime as Attributes | undefined;
    const timeMs = this.clock.at(isTime ? attributesOrTime as TimeInput : time);
    const event = { name, timeMs, attributes: attributes ? { ...attributes } : undefined };
    if (this.events === NO_EVENTS) this.events = [event];
    else (this.events as EventRecord[]).push(event);
    return this;
  }

  addLink(link: Link): this {
    if (this.#ended || this.links.length >= MAX_LINKS || !isSpanContextValid(link.context)) return this;
    const { traceId, spanId, traceFlags, traceState } = link.context;
    const attributes = link.attributes ? { ...link.attributes } : undefined;
    const record = {
      traceId: TraceId.fromHex(traceId),
      spanId: SpanId.fromHex(spanId),
      traceFlags,
      traceState: traceState?.serialize(),
      attributes,
    };
    if (this.links === NO_LINKS) this.links = [record];
    else (this.links as LinkRecord[]).push(record);
    return this;
  }

  addLinks(links: Link[]): this {
    for (let i = 0; i < links.length; i++) this.addLink(links[i]!);
    return this;
  }

  setStatus(status: SpanStatus): this {
    // The spec: OK is final, and UNSET never replaces what was set.
    if (this.#ended || this.status.code === SpanStatusCode.OK || status.code === SpanStatusCode.UNSET) return this;
    this.status = status.code === SpanStatusCode.ERROR && status.message !== undefined
      ? { code: status.code, message: status.message }
      : { code: status.code };
    return this;
  }

  updateName(name: string): this {
    if (!this.#ended) this.name = name;
    return this;
  }

  end(endTime?: TimeInput): void {
    if (this.#ended) return;
    this.#ended = true;
    this.endMs = Math.max(this.startMs, this.clock.at(endTime));
    this.#record(this);
  }

  isRecording(): boolean {
    return !this.#ended;
  }

  recordException(exception: Exception, time?: TimeInput): void {
    const attributes: Attributes = {};
    if (typeof exception === "string") {
      attributes["exception.message"] = exception;
    } else {
      const type = exception.name ?? (exception.code === undefined ? undefined : String(exception.code));
      if (type) attributes["exception.type"] = type;
      if (exception.message) attributes["exception.message"] = exception.message;
      if (exception.stack) attributes["exception.stacktrace"] = exception.stack;
    }
    this.addEvent("exception", attributes, time);
  }
}
