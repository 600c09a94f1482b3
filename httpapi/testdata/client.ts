// A client of taskrunner's API written against the types openapi-typescript
// generates from httpapi/openapi.yaml: scripts/openapi-check.sh compiles it
// (strict), so the document stays one a TypeScript client can use.
import type { paths, components } from "./api";

type SubmitBody = paths["/tasks"]["post"]["requestBody"]["content"]["application/json"];
type Task = components["schemas"]["Task"];
type ApiError = components["schemas"]["Error"];

export async function submit(base: string, key: string, body: SubmitBody): Promise<Task> {
  const res = await fetch(base + "/tasks", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
    body: JSON.stringify(body),
  });
  if (!res.ok) {
    const e = (await res.json()) as ApiError;
    throw new Error(e.error.code + ": " + e.error.message);
  }
  return (await res.json()) as Task;
}

const echo: SubmitBody = { type: "echo", params: { msg: "hello" } };
void echo;
