/**
 * dsenv's JupyterLab extension: a side panel (right side bar) over the active notebook's environment, backed by
 * the dsenv server extension's REST API (/dsenv/api/...).
 */
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';

import { DsenvPanel, INotebookHandle } from './panel';

const ICON = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 2 3 6.5v11L12 22l9-4.5v-11L12 2Zm0 2.2 6.6 3.3L12 10.8 5.4 7.5 12 4.2ZM5 9.1l6 3v7.6l-6-3V9.1Zm8 10.6v-7.6l6-3v7.6l-6 3Z"/>
  </g>
</svg>`;

/** The side bar icon. */
export const dsenvIcon = new LabIcon({ name: 'dsenv:icon', svgstr: ICON });

/** The parts of a notebook document widget the panel uses (JupyterLab 4's NotebookPanel and its context). */
interface IDocumentLike extends Widget {
  context: {
    path: string;
    ready: Promise<void>;
    save(): Promise<void>;
    revert(): Promise<void>;
    saveState?: {
      connect(slot: (sender: unknown, state: string) => void): boolean;
      disconnect(slot: (sender: unknown, state: string) => void): boolean;
    };
    model: {
      getMetadata?(key: string): unknown;
      setMetadata?(key: string, value: unknown): void;
    };
  };
}

function isNotebook(widget: Widget | null): widget is IDocumentLike {
  const context = (widget as IDocumentLike | null)?.context;
  return !!context && typeof context.path === 'string' && context.path.endsWith('.ipynb');
}

function handleFor(widget: IDocumentLike): INotebookHandle {
  const { context } = widget;
  return {
    path: context.path,
    getMetadata: () => {
      const value = context.model.getMetadata?.('dsenv');
      return value && typeof value === 'object' ? (value as Record<string, unknown>) : {};
    },
    setMetadataAndSave: async (value: Record<string, unknown>) => {
      await context.ready;
      if (!context.model.setMetadata) {
        throw new Error('this document cannot hold notebook metadata');
      }
      context.model.setMetadata('dsenv', value);
      await context.save();
    }
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'dsenv:plugin',
  description: "A side panel for the notebook's dsenv environment: build, run, containers, GPUs, repro.",
  autoStart: true,
  requires: [ILabShell],
  activate: (app: JupyterFrontEnd, labShell: ILabShell) => {
    const panel = new DsenvPanel({
      open: (path: string) => void app.commands.execute('docmanager:open', { path })
    });
    panel.title.icon = dsenvIcon;
    app.shell.add(panel, 'right', { rank: 900 });

    let last: IDocumentLike | null = null;
    // a saved notebook may import or declare something new: read its environment again
    const onSaved = (_: unknown, state: string) => {
      if (state === 'completed' && panel.isVisible) {
        void panel.refreshEnv();
      }
    };
    const follow = () => {
      const current = labShell.currentWidget;
      if (isNotebook(current)) {
        if (current !== last) {
          last?.context.saveState?.disconnect(onSaved);
          current.context.saveState?.connect(onSaved);
        }
        last = current;
        panel.setNotebook(handleFor(current));
      } else if (last && last.isDisposed) {
        last = null;
        panel.setNotebook(null);
      }
    };
    labShell.currentChanged.connect(follow);
    void app.restored.then(follow);
  }
};

export default plugin;
