// Composition root of the `tsvm` command: the one place where layers are wired together.
import { main } from "../src/cli/main.ts";

process.exitCode = await main(process.argv.slice(2));
