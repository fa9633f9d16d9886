// The same request as the console made, as code people can paste.

export function curlSnippet(origin, pipeline, fileName, withKey) {
  const auth = withKey ? `  -H "Authorization: Bearer $POSEFLEET_API_KEY" \\\n` : "";
  return [
    "# submit and wait up to 30 s for the result",
    `curl -sS -X POST "${origin}/v1/pipelines/${pipeline}/jobs" \\`,
    `${auth}  -H "Prefer: wait=30" \\`,
    `  --data-binary @${shellQuote(fileName)}`,
    "",
    "# or follow the job live (server-sent events)",
    `curl -N ${withKey ? '-H "Authorization: Bearer $POSEFLEET_API_KEY" ' : ""}"${origin}/v1/jobs/JOB_ID/events"`,
  ].join("\n");
}

export function pythonSnippet(origin, pipeline, fileName, withKey) {
  const headers = withKey
    ? '{"Prefer": "wait=30", "Authorization": f"Bearer {os.environ[\'POSEFLEET_API_KEY\']}"}'
    : '{"Prefer": "wait=30"}';
  return [
    "import os",
    "",
    "import httpx",
    "",
    `with open(${JSON.stringify(fileName)}, "rb") as f:`,
    "    job = httpx.post(",
    `        "${origin}/v1/pipelines/${pipeline}/jobs",`,
    "        content=f.read(),",
    `        headers=${headers},`,
    "        timeout=60,",
    "    ).json()",
    'print(job["status"], job.get("result"))',
  ].join("\n");
}

function shellQuote(text) {
  return /^[\w.\/-]+$/.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}
