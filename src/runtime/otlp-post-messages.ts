/**
 * What the span export's post thread (otlp-post-thread.ts, otlp-post-worker.ts) and the
 * event loop share: the settings both read, a batch's bytes one way, the post's result
 * the other. A result's error crosses as plain fields, because a structured clone keeps
 * neither an error's class nor its own fields (OTLPExporterError's status and body, a
 * network error's code), which the SDK's export delegate and its metrics read.
 */
import { type ExportResponse, OTLPExporterError } from "@opentelemetry/otlp-exporter-base";
import { convertLegacyHttpOptions } from "@opentelemetry/otlp-exporter-base/node-http";

/**
 * What the thread posts to. Each side reads the rest of the settings (headers,
 * compression, certificates) from the same environment (`exporterSettings`): an agent
 * and a headers function cannot cross threads.
 */
export interface PostThreadSettings {
  url: string;
  contentType: string;
}

/** The SDK's settings for an OTLP/HTTP trace exporter on Node: `settings` over the `OTEL_EXPORTER_OTLP_*` environment. */
export function exporterSettings(
  { url, contentType }: PostThreadSettings,
): ReturnType<typeof convertLegacyHttpOptions> {
  return convertLegacyHttpOptions({ url }, "TRACES", "v1/traces", { "Content-Type": contentType });
}

/** A batch to post, and how long its post may take (retries included). */
export interface PostRequest {
  id: number;
  body: Uint8Array;
  timeoutMs: number;
}

/** The result of the post of batch `id`. */
export interface PostAnswer {
  id: number;
  response: PlainResponse;
}

/** An error as plain data. */
export interface PlainError {
  message: string;
  /** OTLPExporterError's HTTP status (a number), or a network error's code (`ECONNREFUSED`). */
  code?: number | string;
  /** OTLPExporterError's response body. */
  data?: string;
}

export type PlainResponse =
  | { status: "success"; data?: Uint8Array }
  | { status: "failure"; error: PlainError }
  | { status: "retryable"; retryInMillis?: number; error?: PlainError };

/** `response` as it crosses to the event loop. */
export function plainResponse(response: ExportResponse): PlainResponse {
  if (response.status === "success") return response;
  if (response.status === "failure") return { status: "failure", error: plainError(response.error) };
  const plain: PlainResponse = { status: "retryable" };
  if (response.retryInMillis !== undefined) plain.retryInMillis = response.retryInMillis;
  if (response.error) plain.error = plainError(response.error);
  return plain;
}

/** The response again, its error of the class it was (an HTTP status: OTLPExporterError). */
export function responseOf(plain: PlainResponse): ExportResponse {
  if (plain.status === "success") return plain;
  if (plain.status === "failure") return { status: "failure", error: errorOf(plain.error) };
  const response: ExportResponse = { status: "retryable" };
  if (plain.retryInMillis !== undefined) response.retryInMillis = plain.retryInMillis;
  if (plain.error) response.error = errorOf(plain.error);
  return response;
}

function plainError(error: Error): PlainError {
  const plain: PlainError = { message: error.message };
  const { code, data } = error as { code?: unknown; data?: unknown };
  if (typeof code === "number" || typeof code === "string") plain.code = code;
  if (typeof data === "string") plain.data = data;
  return plain;
}

function errorOf(plain: PlainError): Error {
  if (typeof plain.code === "number") return new OTLPExporterError(plain.message, plain.code, plain.data);
  const error: Error & { code?: string } = new Error(plain.message);
  if (plain.code !== undefined) error.code = plain.code;
  return error;
}
