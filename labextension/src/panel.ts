/**
 * The dsenv side panel: the active notebook's environment (requirements and where each came from, image tag and
 * whether it is up to date, Add package), Build with progress and log, Run, the containers (Stop / Logs /
 * Commit / Push), the GPUs and Repro. It follows the notebook the user works in; containers and GPUs are polled
 * every few seconds while the panel is visible, updating rows in place so nothing jumps.
 */
import { Widget } from '@lumino/widgets';

import {
  DsenvApiError,
  IContainer,
  IEnvironment,
  IGpus,
  IJob,
  jobError,
  post,
  requestAPI,
  waitForJob
} from './api';

/** What the panel needs from the notebook it follows. */
export interface INotebookHandle {
  /** Path relative to the server root. */
  path: string;
  /** The notebook's metadata.dsenv as the open document has it. */
  getMetadata(): Record<string, unknown>;
  /** Set metadata.dsenv on the open document and save it (through the contents API). */
  setMetadataAndSave(value: Record<string, unknown>): Promise<void>;
}

/** The host's hooks: open a file in JupyterLab. */
export interface IPanelHost {
  open(path: string): void;
}

type Attrs = Record<string, string | boolean | ((e: Event) => void)>;

function h(tag: string, attrs: Attrs = {}, ...children: (Node | string)[]): HTMLElement {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (typeof value === 'function') {
      el.addEventListener(key, value as EventListener);
    } else if (typeof value === 'boolean') {
      if (value) {
        el.setAttribute(key, '');
      }
    } else if (key === 'class') {
      el.className = value;
    } else {
      el.setAttribute(key, value);
    }
  }
  for (const child of children) {
    el.append(child);
  }
  return el;
}

function button(label: string, onClick: () => void, title = '', cls = ''): HTMLButtonElement {
  return h(
    'button',
    { class: `jp-dsenv-button ${cls}`.trim(), title, type: 'button', click: onClick },
    label
  ) as HTMLButtonElement;
}

function input(placeholder: string, cls = '', title = ''): HTMLInputElement {
  return h('input', {
    class: `jp-dsenv-input ${cls}`.trim(),
    placeholder,
    title: title || placeholder,
    spellcheck: 'false'
  }) as HTMLInputElement;
}

function gib(bytes: number): string {
  return (bytes / 2 ** 30).toFixed(1);
}

const POLL_MS = 4000;
const MAX_LOG_LINES = 2000;

/** The side panel widget. */
export class DsenvPanel extends Widget {
  private notebook: INotebookHandle | null = null;
  private busy = new Set<string>();
  private timer = 0;
  private envRequest = 0;
  private lastContainers = '';
  private lastGpus = '';

  private titleEl = h('div', { class: 'jp-dsenv-notebook' }, 'Open a notebook to see its environment');
  private errorEl = h('div', { class: 'jp-dsenv-error', role: 'alert' });
  private envInfo = h('div', { class: 'jp-dsenv-envinfo' });
  private reqBody = h('tbody');
  private tagEl = h('div', { class: 'jp-dsenv-tag' });
  private addField = input('package, e.g. scipy>=1.11', 'jp-dsenv-add-field');
  private addButton = button('Add', () => void this.addPackage(), 'write it to this notebook’s metadata.dsenv');
  private buildButton = button('Build', () => void this.build(), 'build the environment’s image', 'jp-mod-accept');
  private bar = h('div', { class: 'jp-dsenv-bar-fill' });
  private buildStatus = h('div', { class: 'jp-dsenv-status' });
  private log = h('pre', { class: 'jp-dsenv-log' });
  private logBox = h('details', { class: 'jp-dsenv-logbox' }, h('summary', {}, 'Log'), this.log) as HTMLDetailsElement;
  private gpusField = input('GPUs: N, all or UUIDs', 'jp-dsenv-narrow');
  private portsField = input('extra ports, e.g. 8050', 'jp-dsenv-narrow');
  private runButton = button('Run', () => void this.run(), 'start JupyterLab in the environment', 'jp-mod-accept');
  private runStatus = h('div', { class: 'jp-dsenv-status' });
  private containersList = h('div', { class: 'jp-dsenv-containers' });
  private containersEmpty = h('div', { class: 'jp-dsenv-empty' }, 'no dsenv containers');
  private commitTag = input('repo:tag to commit as', 'jp-dsenv-narrow');
  private commitMessage = input('commit message', 'jp-dsenv-narrow');
  private pushTag = input('repo:tag to push', 'jp-dsenv-narrow');
  private pushRegistry = input('registry, e.g. 127.0.0.1:5000', 'jp-dsenv-narrow');
  private pushButton = button('Push', () => void this.push(), 'push the image to the registry');
  private containersStatus = h('div', { class: 'jp-dsenv-status' });
  private gpusEl = h('div', { class: 'jp-dsenv-gpus' }, 'reading GPUs…');
  private reproButton = button('Repro', () => void this.repro(), 'run this notebook with papermill in its image');
  private reproStatus = h('div', { class: 'jp-dsenv-status' });

  constructor(private host: IPanelHost) {
    super();
    this.id = 'dsenv-panel';
    this.addClass('jp-dsenv-panel');
    this.title.caption = 'dsenv: the notebook’s environment';
    this.addField.addEventListener('keydown', e => {
      if ((e as KeyboardEvent).key === 'Enter') {
        void this.addPackage();
      }
    });
    const section = (name: string, ...children: (Node | string)[]) =>
      h('section', { class: 'jp-dsenv-section', 'data-section': name.toLowerCase() }, h('h3', {}, name), ...children);
    this.node.append(
      h('header', { class: 'jp-dsenv-header' }, h('h2', {}, 'dsenv'), this.titleEl),
      this.errorEl,
      section(
        'Environment',
        this.envInfo,
        h(
          'table',
          { class: 'jp-dsenv-table jp-dsenv-requirements' },
          h('thead', {}, h('tr', {}, h('th', {}, 'requirement'), h('th', {}, 'from'))),
          this.reqBody
        ),
        this.tagEl,
        h('div', { class: 'jp-dsenv-row' }, this.addField, this.addButton)
      ),
      section(
        'Build',
        h('div', { class: 'jp-dsenv-row' }, this.buildButton, h('div', { class: 'jp-dsenv-bar' }, this.bar)),
        this.buildStatus,
        this.logBox
      ),
      section(
        'Run',
        h('div', { class: 'jp-dsenv-row' }, this.gpusField, this.portsField, this.runButton),
        this.runStatus
      ),
      section(
        'Containers',
        this.containersList,
        this.containersEmpty,
        h('div', { class: 'jp-dsenv-row' }, this.commitTag, this.commitMessage),
        h('div', { class: 'jp-dsenv-row' }, this.pushTag, this.pushRegistry, this.pushButton),
        this.containersStatus
      ),
      section('GPUs', this.gpusEl),
      section('Repro', h('div', { class: 'jp-dsenv-row' }, this.reproButton), this.reproStatus)
    );
    this.updateButtons();
  }

  /** Follow another notebook (null: none is active). */
  setNotebook(notebook: INotebookHandle | null): void {
    if (notebook?.path === this.notebook?.path) {
      this.notebook = notebook;
      return;
    }
    this.notebook = notebook;
    this.titleEl.textContent = notebook ? notebook.path : 'Open a notebook to see its environment';
    this.clearError();
    this.reqBody.replaceChildren();
    this.envInfo.textContent = notebook ? 'reading the environment…' : '';
    this.tagEl.replaceChildren();
    this.lastContainers = '';
    this.updateButtons();
    if (notebook && this.isVisible) {
      void this.refreshEnv();
      void this.refreshContainers();
    }
  }

  protected onAfterShow(): void {
    void this.refreshEnv();
    void this.poll();
  }

  protected onAfterHide(): void {
    window.clearTimeout(this.timer);
    this.timer = 0;
  }

  dispose(): void {
    window.clearTimeout(this.timer);
    super.dispose();
  }

  private async poll(): Promise<void> {
    window.clearTimeout(this.timer);
    await Promise.all([this.refreshContainers(), this.refreshGpus()]);
    if (this.isVisible && !this.isDisposed) {
      this.timer = window.setTimeout(() => void this.poll(), POLL_MS);
    }
  }

  // -- errors and busy state ----------------------------------------------------------------------------------
  private showError(error: unknown): void {
    const e = error instanceof DsenvApiError ? error : new DsenvApiError(String(error));
    this.errorEl.replaceChildren(
      h('span', { class: 'jp-dsenv-error-message' }, e.message),
      ...(e.hint ? [h('span', { class: 'jp-dsenv-error-hint' }, `hint: ${e.hint}`)] : [])
    );
    this.errorEl.classList.add('jp-mod-visible');
  }

  private clearError(): void {
    this.errorEl.replaceChildren();
    this.errorEl.classList.remove('jp-mod-visible');
  }

  private async task(name: string, work: () => Promise<void>): Promise<void> {
    if (this.busy.has(name)) {
      return;
    }
    this.busy.add(name);
    this.updateButtons();
    this.clearError();
    try {
      await work();
    } catch (error) {
      this.showError(error);
    } finally {
      this.busy.delete(name);
      this.updateButtons();
    }
  }

  private updateButtons(): void {
    const none = !this.notebook;
    this.buildButton.disabled = none || this.busy.has('build');
    this.runButton.disabled = none || this.busy.has('run');
    this.addButton.disabled = none || this.busy.has('add');
    this.reproButton.disabled = none || this.busy.has('repro');
    this.pushButton.disabled = this.busy.has('push');
  }

  // -- environment ----------------------------------------------------------------------------------------------
  async refreshEnv(): Promise<void> {
    const notebook = this.notebook;
    if (!notebook) {
      return;
    }
    const request = ++this.envRequest;
    try {
      const env = await requestAPI<IEnvironment>('env', {}, { path: notebook.path });
      if (request === this.envRequest) {
        this.showEnv(env);
      }
    } catch (error) {
      if (request === this.envRequest) {
        this.envInfo.textContent = '';
        this.showError(error);
      }
    }
  }

  private showEnv(env: IEnvironment): void {
    this.envInfo.replaceChildren(
      h('div', {}, 'folder ', h('code', {}, env.folder || '.'), ` (${env.notebooks.length} notebook${env.notebooks.length === 1 ? '' : 's'})`),
      h('div', {}, 'base ', h('code', {}, env.base)),
      h('div', {}, `Python ${env.python} `, h('span', { class: 'jp-dsenv-source' }, `(${env.python_source})`))
    );
    const rows = env.requirements.map(r =>
      h(
        'tr',
        { 'data-requirement': r.name },
        h('td', {}, h('code', {}, r.requirement)),
        h('td', { class: 'jp-dsenv-source' }, r.sources.join('; '))
      )
    );
    for (const a of env.apt) {
      rows.push(
        h('tr', {}, h('td', {}, h('code', {}, `apt: ${a.name}`)), h('td', { class: 'jp-dsenv-source' }, a.sources.join('; ')))
      );
    }
    if (!rows.length) {
      rows.push(h('tr', {}, h('td', { colspan: '2', class: 'jp-dsenv-empty' }, 'no requirements')));
    }
    this.reqBody.replaceChildren(...rows);
    this.showTag(env.tag, env.up_to_date);
  }

  private showTag(tag: string, upToDate: boolean): void {
    this.tagEl.replaceChildren(
      h('code', { class: 'jp-dsenv-tagname' }, tag),
      h(
        'span',
        { class: `jp-dsenv-badge ${upToDate ? 'jp-mod-uptodate' : 'jp-mod-stale'}`, 'data-state': upToDate ? 'up-to-date' : 'to-build' },
        upToDate ? 'up to date' : 'to build'
      )
    );
  }

  async addPackage(): Promise<void> {
    const notebook = this.notebook;
    const text = this.addField.value.trim();
    if (!notebook || !text) {
      return;
    }
    await this.task('add', async () => {
      const checked = await post<{ requirement: string; dsenv: Record<string, unknown> }>('env/requirements', {
        path: notebook.path,
        requirement: text,
        metadata: notebook.getMetadata()
      });
      await notebook.setMetadataAndSave(checked.dsenv);
      this.addField.value = '';
      await this.refreshEnv();
    });
  }

  // -- build --------------------------------------------------------------------------------------------------
  private setProgress(step: number, total: number): void {
    const fraction = total > 0 ? Math.min(step / total, 1) : 0;
    this.bar.style.width = `${(fraction * 100).toFixed(1)}%`;
    this.bar.parentElement?.setAttribute('aria-valuenow', String(Math.round(fraction * 100)));
  }

  private appendLog(lines: string[]): void {
    if (!lines.length) {
      return;
    }
    const all = (this.log.textContent ? this.log.textContent.split('\n') : []).concat(lines);
    this.log.textContent = all.slice(-MAX_LOG_LINES).join('\n');
    if (this.logBox.open) {
      this.log.scrollTop = this.log.scrollHeight;
    }
  }

  async build(): Promise<void> {
    const notebook = this.notebook;
    if (!notebook) {
      return;
    }
    await this.task('build', async () => {
      this.log.textContent = '';
      this.setProgress(0, 1);
      this.bar.classList.add('jp-mod-running');
      this.buildStatus.textContent = 'building…';
      try {
        const job = await post<IJob>('build', { path: notebook.path });
        const done = await waitForJob(job.id, j => {
          this.setProgress(j.step, j.total);
          this.appendLog(j.lines);
          if (j.status) {
            this.buildStatus.textContent = j.total ? `step ${j.step}/${j.total}: ${j.status}` : j.status;
          }
        });
        const error = jobError(done);
        if (error) {
          this.buildStatus.textContent = 'build failed';
          throw error;
        }
        this.setProgress(1, 1);
        const r = done.result;
        this.buildStatus.textContent = `${r.built ? 'built' : 'up to date'} in ${Number(r.seconds).toFixed(1)} s`;
        this.showTag(r.tag, true);
      } finally {
        this.bar.classList.remove('jp-mod-running');
      }
    });
  }

  // -- run and containers ---------------------------------------------------------------------------------------
  async run(): Promise<void> {
    const notebook = this.notebook;
    if (!notebook) {
      return;
    }
    await this.task('run', async () => {
      this.runStatus.textContent = 'starting (building first if needed)…';
      const ports = this.portsField.value.split(/[\s,]+/).filter(p => p);
      const job = await post<IJob>('containers', {
        path: notebook.path,
        gpus: this.gpusField.value.trim(),
        ports
      });
      const done = await waitForJob(job.id, j => {
        if (j.total) {
          this.runStatus.textContent = `building: step ${j.step}/${j.total}`;
        }
      });
      const error = jobError(done);
      if (error) {
        this.runStatus.textContent = '';
        throw error;
      }
      const r = done.result;
      this.runStatus.replaceChildren(
        `started ${r.name}: `,
        h('a', { href: r.url, target: '_blank', rel: 'noopener noreferrer', class: 'jp-dsenv-link' }, 'open JupyterLab')
      );
      await this.refreshContainers();
      void this.refreshEnv();
    });
  }

  async refreshContainers(): Promise<void> {
    try {
      const query: Record<string, string> = this.notebook ? { path: this.notebook.path } : {};
      const data = await requestAPI<{ containers: IContainer[] }>('containers', {}, query);
      const key = JSON.stringify(data.containers);
      if (key !== this.lastContainers) {
        this.lastContainers = key;
        this.showContainers(data.containers);
      }
    } catch (error) {
      this.containersStatus.textContent = error instanceof DsenvApiError ? error.message : String(error);
    }
  }

  private showContainers(found: IContainer[]): void {
    this.containersEmpty.style.display = found.length ? 'none' : '';
    const rows = found.map(c => {
      const link = c.url
        ? h('a', { href: c.url, target: '_blank', rel: 'noopener noreferrer', class: 'jp-dsenv-link' }, 'JupyterLab')
        : h('span', { class: 'jp-dsenv-source' }, 'no link');
      const ports = Object.entries(c.ports)
        .filter(([ctr]) => ctr !== '8888')
        .map(([ctr, host]) => `${host}→${ctr}`);
      const facts = [
        link,
        h('span', { class: 'jp-dsenv-source' }, c.gpus.length ? `GPUs ${c.gpus.length}` : 'no GPU'),
        ...(ports.length ? [h('span', { class: 'jp-dsenv-source' }, `ports ${ports.join(', ')}`)] : []),
        ...(c.mine ? [] : [h('span', { class: 'jp-dsenv-source' }, `env ${c.env}`)])
      ];
      return h(
        'div',
        { 'data-container': c.name, class: `jp-dsenv-container ${c.mine ? 'jp-mod-mine' : 'jp-mod-other'}`, title: c.image },
        h(
          'div',
          { class: 'jp-dsenv-container-head' },
          h('code', { class: 'jp-dsenv-container-name' }, c.name),
          h('span', { class: `jp-dsenv-state jp-mod-${c.status}` }, c.status)
        ),
        h('div', { class: 'jp-dsenv-container-facts' }, ...facts),
        h(
          'div',
          { class: 'jp-dsenv-actions' },
          c.status === 'running' || c.status === 'restarting' || c.status === 'paused'
            ? button('Stop', () => void this.containerAction('stop', c.name), 'stop the container', 'jp-dsenv-small')
            : button('Remove', () => void this.containerAction('remove', c.name), 'remove the stopped container', 'jp-dsenv-small'),
          button('Logs', () => void this.containerAction('logs', c.name), 'show its last log lines', 'jp-dsenv-small'),
          button('Commit', () => void this.containerAction('commit', c.name), 'snapshot it as the tag below', 'jp-dsenv-small')
        )
      );
    });
    this.containersList.replaceChildren(...rows);
  }

  private async containerAction(action: 'stop' | 'remove' | 'logs' | 'commit', name: string): Promise<void> {
    await this.task(`${action}:${name}`, async () => {
      if (action === 'stop') {
        this.containersStatus.textContent = `stopping ${name}…`;
        await post(`containers/${name}/stop`);
        this.containersStatus.textContent = `stopped ${name}`;
      } else if (action === 'remove') {
        this.containersStatus.textContent = `removing ${name}…`;
        await requestAPI(`containers/${name}`, { method: 'DELETE' });
        this.containersStatus.textContent = `removed ${name}`;
      } else if (action === 'logs') {
        const logs = await requestAPI<{ text: string }>(`containers/${name}/logs`, {}, { tail: '200' });
        this.log.textContent = logs.text;
        this.logBox.open = true;
        this.buildStatus.textContent = `log of ${name}`;
      } else {
        const tag = this.commitTag.value.trim();
        if (!tag) {
          throw new DsenvApiError('no tag to commit as', 'type repo:tag in the field above, e.g. team/exp1:v2');
        }
        this.containersStatus.textContent = `committing ${name}…`;
        const done = await post<{ tag: string; id: string }>(`containers/${name}/commit`, {
          tag,
          message: this.commitMessage.value
        });
        this.containersStatus.textContent = `committed ${name} as ${done.tag}`;
        this.pushTag.value = done.tag;
      }
      await this.refreshContainers();
    });
  }

  async push(): Promise<void> {
    await this.task('push', async () => {
      const tag = this.pushTag.value.trim();
      if (!tag) {
        throw new DsenvApiError('no tag to push', 'commit a container first, or type repo:tag');
      }
      this.containersStatus.textContent = `pushing ${tag}…`;
      const job = await post<IJob>('push', { tag, registry: this.pushRegistry.value.trim() });
      const done = await waitForJob(job.id, j => {
        this.appendLog(j.lines);
        if (j.total) {
          this.containersStatus.textContent = `pushing ${tag}: ${j.step}/${j.total} layers`;
        }
      });
      const error = jobError(done);
      if (error) {
        this.containersStatus.textContent = '';
        throw error;
      }
      this.containersStatus.textContent = `pushed ${done.result.ref} ${done.result.digest}`;
    });
  }

  // -- GPUs -----------------------------------------------------------------------------------------------------
  async refreshGpus(): Promise<void> {
    let data: IGpus;
    try {
      data = await requestAPI<IGpus>('gpus');
    } catch (error) {
      data = { available: false, reason: String(error), devices: [] };
    }
    const key = JSON.stringify(data);
    if (key === this.lastGpus) {
      return;
    }
    this.lastGpus = key;
    if (!data.available) {
      this.gpusEl.replaceChildren(
        h('div', { class: 'jp-dsenv-empty', title: data.reason || '' }, 'no GPU on this host')
      );
      return;
    }
    const rows = data.devices.map(d => {
      const used = d.memory_total ? d.memory_used / d.memory_total : 0;
      return h(
        'tr',
        { 'data-gpu': d.uuid, title: d.uuid },
        h('td', {}, String(d.index)),
        h('td', {}, d.name),
        h(
          'td',
          {},
          h('div', { class: 'jp-dsenv-meter' }, h('div', { class: 'jp-dsenv-meter-fill', style: `width:${(used * 100).toFixed(0)}%` })),
          `${gib(d.memory_used)}/${gib(d.memory_total)} GiB`
        ),
        h('td', { class: 'jp-dsenv-number' }, d.utilization === null ? '—' : `${d.utilization}%`),
        h('td', {}, d.holders.length ? d.holders.join(', ') : 'free')
      );
    });
    this.gpusEl.replaceChildren(
      h(
        'table',
        { class: 'jp-dsenv-table' },
        h(
          'thead',
          {},
          h('tr', {}, h('th', {}, '#'), h('th', {}, 'GPU'), h('th', {}, 'memory'), h('th', {}, 'util'), h('th', {}, 'held by'))
        ),
        h('tbody', {}, ...rows)
      ),
      h('div', { class: 'jp-dsenv-source' }, `driver ${data.driver}, CUDA ${data.cuda_driver}`)
    );
  }

  // -- repro ----------------------------------------------------------------------------------------------------
  async repro(): Promise<void> {
    const notebook = this.notebook;
    if (!notebook) {
      return;
    }
    await this.task('repro', async () => {
      this.reproStatus.textContent = 'running with papermill in the image…';
      const job = await post<IJob>('repro', { path: notebook.path });
      const done = await waitForJob(job.id, j => {
        this.appendLog(j.lines);
      });
      if (done.state === 'error' && done.error) {
        const output = done.error.output;
        this.reproStatus.replaceChildren(
          ...(output ? ['failed; ', this.openLink(output)] : ['failed'])
        );
        throw jobError(done);
      }
      this.reproStatus.replaceChildren(
        `done in ${Number(done.result.seconds).toFixed(1)} s: `,
        this.openLink(done.result.output)
      );
      this.host.open(done.result.output);
    });
  }

  private openLink(path: string): HTMLElement {
    return h(
      'a',
      {
        href: '#',
        class: 'jp-dsenv-link',
        click: (e: Event) => {
          e.preventDefault();
          this.host.open(path);
        }
      },
      path
    );
  }
}
