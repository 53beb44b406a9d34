// Helpers shared by the scripts: reading options from the environment.

// envInt returns the environment variable name as an integer, or def when it
// is unset or empty. A value that is not a whole number throws, so that a
// typo stops the run instead of running with a default silently.
export function envInt(name, def) {
  const v = __ENV[name];
  if (v === undefined || v === '') {
    return def;
  }
  const n = Number(v);
  if (!Number.isInteger(n)) {
    throw new Error(`${name}=${v}: want a whole number`);
  }
  return n;
}

// envStr returns the environment variable name, or def when it is unset or
// empty.
export function envStr(name, def) {
  const v = __ENV[name];
  return v === undefined || v === '' ? def : v;
}
