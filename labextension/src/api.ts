/**
 * Calls to dsenv's server extension (/dsenv/api/...) through JupyterLab's ServerConnection, which adds the
 * token and XSRF headers. Errors come back as {error: {type, message, hint}} and are thrown as DsenvApiError.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** An error the API reported: its one-line message and the hint saying what to do. */
export class DsenvApiError extends Error {
  constructor(
    message: string,
    readonly hint: string = '',
    readonly type: string = 'Error',
    readonly status: number = 0
  ) {
    super(message);
  }
}

export interface IRequirement {
  name: string;
  requirement: string;
  sources: string[];
  explicit: boolean;
}

export interface IEnvironment {
  notebook: string;
  folder: string;
  name: string;
  notebooks: string[];
  python: string;
  python_source: string;
  base: string;
  base_source: string;
  jupyter: string;
  requirements: IRequirement[];
  apt: { name: string; sources: string[] }[];
  tag: string;
  up_to_date: boolean;
  lock_state: string;
  notes: string[];
}

export interface IContainer {
  name: string;
  env: string;
  status: string;
  image: string;
  url: string | null;
  ports: Record<string, number>;
  gpus: string[];
  created: string;
  folder: string | null;
  mine: boolean;
}

export interface IGpu {
  index: number;
  uuid: string;
  name: string;
  memory_total: number;
  memory_used: number;
  memory_free: number;
  utilization: number | null;
  temperature: number | null;
  holders: string[];
}

export interface IGpus {
  available: boolean;
  reason?: string;
  driver?: string;
  cuda_driver?: string;
  devices: IGpu[];
}

export interface IJob {
  id: string;
  kind: string;
  target: string;
  state: 'running' | 'done' | 'error';
  step: number;
  total: number;
  status: string;
  lines: string[];
  next: number;
  result: any;
  error: { type: string; message: string; hint: string; output?: string } | null;
  seconds: number;
}

/** Call /dsenv/api/<path>; JSON in and out. */
export async function requestAPI<T>(
  path: string,
  init: RequestInit = {},
  query: Record<string, string> = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const search = new URLSearchParams(query).toString();
  const url =
    URLExt.join(settings.baseUrl, 'dsenv', 'api', path) +
    (search ? `?${search}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new DsenvApiError(
      `the Jupyter server did not answer: ${error}`,
      'check that the server is running'
    );
  }
  const text = await response.text();
  let data: any = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { error: { message: text.slice(0, 200), hint: '' } };
  }
  if (!response.ok) {
    const e = data.error || {};
    throw new DsenvApiError(
      e.message || `HTTP ${response.status}`,
      e.hint || (response.status === 404 ? 'is the dsenv server extension enabled?' : ''),
      e.type || 'HTTPError',
      response.status
    );
  }
  return data as T;
}

/** POST a JSON body. */
export function post<T>(path: string, body: unknown = {}): Promise<T> {
  return requestAPI<T>(path, { method: 'POST', body: JSON.stringify(body) });
}

/** Poll a job until it ends, handing each state (with new log lines) to onUpdate; resolves with the last. */
export async function waitForJob(
  id: string,
  onUpdate: (job: IJob) => void,
  every = 500
): Promise<IJob> {
  let since = 0;
  for (;;) {
    const job = await requestAPI<IJob>(`jobs/${id}`, {}, { since: String(since) });
    since = job.next;
    onUpdate(job);
    if (job.state !== 'running') {
      return job;
    }
    await new Promise(resolve => setTimeout(resolve, every));
  }
}

/** The error of a finished job as a DsenvApiError (null when it succeeded). */
export function jobError(job: IJob): DsenvApiError | null {
  if (job.state !== 'error' || !job.error) {
    return null;
  }
  return new DsenvApiError(job.error.message, job.error.hint, job.error.type);
}
