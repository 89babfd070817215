/** Prints the configuration reference (docs/config.md) generated from src/config/schema.ts. */
import { configReference } from '../src/config/reference.js';

process.stdout.write(configReference());
