import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

export interface ServerProcess {
  url: string;
  child: ChildProcess;
  output: () => string;
  /** SIGTERM and wait for exit. */
  stop: () => Promise<void>;
  /** SIGKILL and wait for exit. */
  kill: () => Promise<void>;
}

/**
 * Starts `src/runtime/node.ts` as a real child process on an ephemeral port and
 * resolves once it has printed its listening line: as `npm start` runs it, on Node's own
 * type stripping (no loader).
 */
export function startServer(env: Record<string, string>): Promise<ServerProcess> {
  return spawnServer(process.execPath, ["src/runtime/node.ts"], env);
}

/** The Deno binary the `deno` npm package ships. */
export const DENO = join(ROOT, "node_modules", ".bin", "deno");

/** `deno task serve` itself (functions/app.ts behind Deno.serve) on an ephemeral port. */
export function startDenoServer(env: Record<string, string>): Promise<ServerProcess> {
  return spawnServer(DENO, ["task", "serve"], env);
}

/** `deno serve functions/<name>.ts`: one edge function on its own, on an ephemeral port. */
export function startDenoFunction(name: string, env: Record<string, string>): Promise<ServerProcess> {
  return spawnServer(DENO, ["serve", "-A", "--host", "127.0.0.1", "--port", "0", `functions/${name}.ts`], env);
}

async function spawnServer(command: string, args: string[], env: Record<string, string>): Promise<ServerProcess> {
  const child = spawn(command, args, {
    cwd: ROOT,
    env: { ...process.env, HOST: "127.0.0.1", PORT: "0", NO_COLOR: "1", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const url = await new Promise<string>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      // The line is JSON (or text for people): the URL ends at a space, a slash or a quote.
      const match = /[Ll]istening on (http:\/\/[^\s/"]+)/.exec(output);
      if (match) resolve(match[1] as string);
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    child.once("exit", (code) => reject(new Error(`server exited with ${code} before listening:\n${output}`)));
  });
  const exited = once(child, "exit");
  const stopWith = async (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill(signal);
      // A cleanup bound, not a synchronisation (the test is over by now): a server that
      // has not exited within 5 s of SIGTERM is killed.
      const escalate = setTimeout(() => child.kill("SIGKILL"), 5000);
      await exited;
      clearTimeout(escalate);
    }
  };
  return { url, child, output: () => output, stop: () => stopWith("SIGTERM"), kill: () => stopWith("SIGKILL") };
}
