import { MemoryBlobStore } from "../../src/blob/memory.ts";
import { describeBlobStoreContract } from "./contract.ts";

describeBlobStoreContract("memory", async () => ({ store: new MemoryBlobStore() }));
