/**
 * The live page's script is generated (src/http/page-script.generated.ts, by `npm run
 * build:page` from src/http/page-app.ts): rebuilding it gives exactly the committed file,
 * so it is never stale, and the page at `/` serves it inline. What the page does in a
 * browser is test/browser/live-page.test.ts.
 */
import { describe, expect, it } from "vitest";
import { LIVE_PAGE } from "../../src/http/page.ts";
import { PAGE_SCRIPT } from "../../src/http/page-script.generated.ts";
import { committedPageModule, PAGE_MODULE, pageModuleSource } from "../support/build-page.ts";

describe("the live page's generated script", () => {
  it(`${PAGE_MODULE} is what \`npm run build:page\` makes of page-app.ts today`, async () => {
    expect(await pageModuleSource(), "stale: run `npm run build:page`").toBe(committedPageModule());
  });

  it("is inlined whole in the page, as one module script nothing in it can end early", () => {
    expect(PAGE_SCRIPT.length).toBeGreaterThan(1000);
    expect(PAGE_SCRIPT).not.toMatch(/<\/script|<script|<!--/i);
    expect(LIVE_PAGE).toContain(`<script type="module">\n${PAGE_SCRIPT}\n</script>`);
    expect(LIVE_PAGE.match(/<script/g)).toHaveLength(1);
    // The store does the work: no EventSource of its own, and the client's store is in it.
    expect(PAGE_SCRIPT).not.toContain("EventSource");
    expect(PAGE_SCRIPT).toContain("text/event-stream");
  });
});
