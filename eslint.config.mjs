// ESLint flat config: typescript-eslint's recommended rules, Prettier owns formatting, and the
// core library is kept free of CLI concerns (no oclif, no console, no process exits).
import js from '@eslint/js'
import prettier from 'eslint-config-prettier'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  {ignores: ['dist/', 'node_modules/', 'bench/.work/', 'oclif.manifest.json', 'docs/img/']},
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {globals: {...globals.node}},
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        {argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none'},
      ],
      '@typescript-eslint/consistent-type-imports': ['error', {fixStyle: 'inline-type-imports'}],
      'no-constant-condition': ['error', {checkLoops: false}],
      eqeqeq: ['error', 'always', {null: 'ignore'}],
      // Terminal sanitising and ANSI-stripping regexes match control characters on purpose.
      'no-control-regex': 'off',
    },
  },
  {
    files: ['src/lib/**/*.ts'],
    rules: {
      'no-console': 'error',
      'no-restricted-imports': [
        'error',
        {patterns: [{group: ['@oclif/*', '**/cli/**', '**/commands/**'], message: 'src/lib has no CLI concerns'}]},
      ],
      'no-restricted-properties': [
        'error',
        {object: 'process', property: 'exit', message: 'src/lib never exits the process'},
      ],
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {'@typescript-eslint/no-unused-expressions': 'off', '@typescript-eslint/no-non-null-assertion': 'off'},
  },
  {
    files: ['**/*.cjs'],
    languageOptions: {
      sourceType: 'commonjs',
      globals: {require: 'readonly', module: 'writable', __dirname: 'readonly'},
    },
    rules: {'@typescript-eslint/no-require-imports': 'off'},
  },
  prettier,
)
