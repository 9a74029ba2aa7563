// deno-lint-ignore-file no-explicit-any -- response bodies are whatever the server sent; the assertions check their shape
/** A response read whole: status, headers, the text, and the JSON when the text is JSON. */
export interface JsonResult {
  status: number;
  headers: Headers;
  text: string;
  json: any;
}

export async function readJsonResult(response: Response): Promise<JsonResult> {
  const text = await response.text();
  let json: any;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  return { status: response.status, headers: response.headers, text, json };
}
