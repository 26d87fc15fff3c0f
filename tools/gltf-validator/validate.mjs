#!/usr/bin/env node
/**
 * Command-line wrapper around the Khronos glTF validator (npm `gltf-validator`).
 *
 * Usage:
 *   node validate.mjs FILE...            validate each FILE (GLB or .gltf)
 *   node validate.mjs --stdin-list       validate newline-separated paths read from stdin
 *   node validate.mjs --stdin-list FILE  both (FILE arguments first, then stdin paths)
 *
 * For every file exactly one JSON line is printed to stdout, in input order:
 *   {"file": ..., "errors": N, "warnings": N, "infos": N, "hints": N,
 *    "truncated": bool, "messages": [{"code", "message", "severity", "pointer"}, ...]}
 * `messages` holds the errors and warnings reported by the validator (severity
 * 0 = error, 1 = warning), capped at MAX_MESSAGES; `truncated` is true when the
 * list was capped or the validator itself stopped at `maxIssues`.
 * A file that cannot be read additionally carries an "error" field.
 * A file that is not glTF at all is reported with one error (code INVALID_DATA).
 *
 * Exit status: 0 when no file has errors, 1 when any file has errors,
 * 2 on usage errors or when any file could not be read.
 *
 * Assets are expected to be self-contained (GLB with embedded BIN chunk), so
 * external resources are never loaded: the resource loader always rejects.
 */

import { readFile } from 'node:fs/promises';
import { validateBytes } from 'gltf-validator';

/** Maximum number of messages (errors + warnings) listed per file. */
const MAX_MESSAGES = 50;

/** Maximum number of issues the validator collects per file. */
const MAX_ISSUES = 1000;

const USAGE = `usage: node validate.mjs [--stdin-list] [FILE...]
  Validates glTF 2.0 assets (GLB or .gltf) with the Khronos glTF validator and
  prints one JSON line per file. With --stdin-list, newline-separated paths are
  also read from standard input.`;

/**
 * Builds a report for a file that could not be validated at all.
 * @param {string} file - Path as given by the caller.
 * @param {string} code - Issue code to report.
 * @param {string} message - Human-readable reason.
 * @param {boolean} ioError - Whether the file was unreadable (adds the "error" field).
 * @returns {object} Report object in the CLI's output format.
 */
function failureReport(file, code, message, ioError) {
  const report = {
    file,
    errors: 1,
    warnings: 0,
    infos: 0,
    hints: 0,
    truncated: false,
    messages: [{ code, message, severity: 0, pointer: null }],
  };
  if (ioError) {
    report.error = message;
  }
  return report;
}

/**
 * Rejects every external resource: the GLBs produced by cad2gltf are self-contained.
 * @param {string} uri - Relative URI requested by the asset.
 * @returns {Promise<never>} Always-rejected promise.
 */
function rejectExternalResource(uri) {
  return Promise.reject(new Error(`external resources are not allowed: ${uri}`));
}

/**
 * Validates one file and returns its report; never throws.
 * @param {string} file - Path of the GLB or .gltf file.
 * @returns {Promise<{report: object, ioError: boolean}>}
 */
async function validateFile(file) {
  let data;
  try {
    data = await readFile(file);
  } catch (err) {
    const reason = err && err.message ? err.message : String(err);
    return { report: failureReport(file, 'IO_ERROR', `cannot read file: ${reason}`, true), ioError: true };
  }

  let result;
  try {
    result = await validateBytes(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), {
      uri: file,
      maxIssues: MAX_ISSUES,
      writeTimestamp: false,
      externalResourceFunction: rejectExternalResource,
    });
  } catch (err) {
    // The validator rejects (with a string) when the bytes are neither glTF JSON nor GLB.
    const reason = err && err.message ? err.message : String(err);
    return { report: failureReport(file, 'INVALID_DATA', reason, false), ioError: false };
  }

  const issues = (result && result.issues) || {};
  const all = Array.isArray(issues.messages) ? issues.messages : [];
  const severe = all.filter((m) => m.severity === 0 || m.severity === 1);
  const messages = severe.slice(0, MAX_MESSAGES).map((m) => ({
    code: m.code ?? null,
    message: m.message ?? null,
    severity: m.severity,
    pointer: m.pointer ?? null,
  }));
  const report = {
    file,
    errors: issues.numErrors ?? 0,
    warnings: issues.numWarnings ?? 0,
    infos: issues.numInfos ?? 0,
    hints: issues.numHints ?? 0,
    truncated: Boolean(issues.truncated) || severe.length > MAX_MESSAGES,
    messages,
  };
  return { report, ioError: false };
}

/**
 * Reads all of standard input as UTF-8 text.
 * @returns {Promise<string>}
 */
async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) {
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Parses arguments, validates every file and sets the exit code.
 * @param {string[]} argv - Command-line arguments (without node and script).
 * @returns {Promise<number>} Exit status.
 */
async function main(argv) {
  let stdinList = false;
  let onlyFiles = false;
  const files = [];
  for (const arg of argv) {
    if (!onlyFiles && arg === '--') {
      onlyFiles = true;
    } else if (!onlyFiles && arg === '--stdin-list') {
      stdinList = true;
    } else if (!onlyFiles && (arg === '-h' || arg === '--help')) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    } else if (!onlyFiles && arg.startsWith('-') && arg !== '-') {
      process.stderr.write(`validate.mjs: unknown option ${arg}\n${USAGE}\n`);
      return 2;
    } else {
      files.push(arg);
    }
  }
  if (stdinList) {
    const text = await readStdin();
    for (const line of text.split(/\r?\n/)) {
      if (line.trim() !== '') {
        files.push(line);
      }
    }
  } else if (files.length === 0) {
    process.stderr.write(`validate.mjs: no files given\n${USAGE}\n`);
    return 2;
  }

  let anyErrors = false;
  let anyIoError = false;
  for (const file of files) {
    const { report, ioError } = await validateFile(file);
    anyIoError ||= ioError;
    anyErrors ||= report.errors > 0;
    process.stdout.write(`${JSON.stringify(report)}\n`);
  }
  if (anyIoError) {
    return 2;
  }
  return anyErrors ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(`validate.mjs: internal error: ${err && err.stack ? err.stack : err}\n`);
    process.exitCode = 2;
  },
);
