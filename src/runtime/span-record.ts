/**
 * A finished span as the Node server's tracer records it: plain data, times as epoch
 * milliseconds. `http/protobuf` encodes it as it ends (otlp-protobuf.ts); `http/json`
 * turns a batch's records into the SDK's `ReadableSpan`s (`toReadableSpan`) when it goes.
 */
import type { Attributes, HrTime, Link, SpanContext, SpanKind, SpanStatus } from "@opentelemetry/api";
import { TraceState } from "@opentelemetry/core";
import type { Resource } from "@opentelemetry/resources";
import type { ReadableSpan, TimedEvent } from "@opentelemetry/sdk-trace";
import type { SpanId, TraceId } from "./span-ids.ts";

export interface SpanRecord {
  /** The tracer's name (the instrumentation scope). */
  scope: string;
  name: string;
  kind: SpanKind;
  /** Ids as words (span-ids.ts): the encoder writes their bytes, the JSON path their hex. */
  traceId: TraceId;
  spanId: SpanId;
  traceFlags: number;
  /** The W3C `tracestate`, serialized. */
  traceState: string | undefined;
  /** Undefined for a root span. */
  parentSpanId: SpanId | undefined;
  /** The parent came in a `traceparent` (another process's span). */
  parentIsRemote: boolean;
  startMs: number;
  endMs: number;
  attributes: Attributes;
  status: SpanStatus;
  links: readonly LinkRecord[];
  events: readonly EventRecord[];
}

export interface LinkRecord {
  traceId: TraceId;
  spanId: SpanId;
  traceFlags: number;
  traceState: string | undefined;
  attributes: Attributes | undefined;
}

export interface EventRecord {
  name: string;
  timeMs: number;
  attributes: Attributes | undefined;
}

/** Epoch milliseconds (with their fraction) as OpenTelemetry's [seconds, nanoseconds]. */
export function hrTimeOf(ms: number): HrTime {
  const seconds = Math.floor(ms / 1000);
  const nanos = Math.round((ms - seconds * 1000) * 1e6);
  return nanos >= 1e9 ? [seconds + 1, nanos - 1e9] : [seconds, nanos];
}

function contextOf(
  traceId: TraceId,
  spanId: SpanId,
  traceFlags: number,
  traceState: string | undefined,
  isRemote: boolean,
): SpanContext {
  return {
    traceId: traceId.hex,
    spanId: spanId.hex,
    traceFlags,
    traceState: traceState ? new TraceState(traceState) : undefined,
    isRemote,
  };
}

/** The record as the SDK's exporters take it. */
export function toReadableSpan(
  record: SpanRecord,
  resource: Resource,
  instrumentationScope: { name: string },
): ReadableSpan {
  const spanContext = contextOf(record.traceId, record.spanId, record.traceFlags, record.traceState, false);
  const durationNanos = Math.max(0, Math.round((record.endMs - record.startMs) * 1e6));
  return {
    name: record.name,
    kind: record.kind,
    spanContext: () => spanContext,
    parentSpanContext: record.parentSpanId === undefined
      ? undefined
      : contextOf(record.traceId, record.parentSpanId, record.traceFlags, undefined, record.parentIsRemote),
    startTime: hrTimeOf(record.startMs),
    endTime: hrTimeOf(record.endMs),
    duration: [Math.floor(durationNanos / 1e9), durationNanos % 1e9],
    status: record.status,
    attributes: record.attributes,
    links: record.links.length === 0 ? [] : record.links.map(linkOf),
    events: record.events.length === 0 ? [] : record.events.map(eventOf),
    ended: true,
    resource,
    instrumentationScope,
    droppedAttributesCount: 0,
    droppedEventsCount: 0,
    droppedLinksCount: 0,
  };
}

function linkOf(link: LinkRecord): Link {
  const context = contextOf(link.traceId, link.spanId, link.traceFlags, link.traceState, false);
  return link.attributes ? { context, attributes: link.attributes } : { context };
}

function eventOf(event: EventRecord): TimedEvent {
  const time = hrTimeOf(event.timeMs);
  return event.attributes ? { name: event.name, time, attributes: event.attributes } : { name: event.name, time };
}
